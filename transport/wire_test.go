package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func TestHandshakeRoundTrip(t *testing.T) {
	h := handshake{version: protocolVersion, kind: kindSnapshot, clusterID: 1<<63 + 5, from: 3, to: 1 << 40}
	b := h.appendTo(nil)
	if len(b) != handshakeSize {
		t.Fatalf("encoded %d bytes, want %d", len(b), handshakeSize)
	}
	got, err := parseHandshake(b)
	if err != nil || got != h {
		t.Fatalf("got %+v, %v; want %+v", got, err, h)
	}
}

func TestParseHandshakeRejects(t *testing.T) {
	good := handshake{version: protocolVersion, kind: kindMessages, clusterID: 1, from: 2, to: 3}.appendTo(nil)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"short":     good[:handshakeSize-1],
		"long":      append(good[:handshakeSize:handshakeSize], 0),
		"bad magic": append([]byte("HTTP"), good[4:]...),
	} {
		if _, err := parseHandshake(b); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
}

func TestAnswer(t *testing.T) {
	for s := statusOK; s < statusEnd; s++ {
		got, err := parseAnswer(appendAnswer(nil, s))
		if err != nil || got != s {
			t.Errorf("status %d: got %d, %v", s, got, err)
		}
		if (s.err() == nil) != (s == statusOK) {
			t.Errorf("status %d: err() = %v", s, s.err())
		}
	}
	for name, b := range map[string][]byte{
		"bad status":  append([]byte(magic), protocolVersion, byte(statusEnd)),
		"bad version": append([]byte(magic), protocolVersion+1, 0),
		"bad magic":   append([]byte("RKVX"), protocolVersion, 0),
		"short":       []byte(magic),
	} {
		if _, err := parseAnswer(b); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
	if err := status(200).err(); !errors.Is(err, errBadStatus) {
		t.Errorf("unknown status: got %v, want errBadStatus", err)
	}
}

func sampleMessages() []raftpb.Message {
	return []raftpb.Message{
		heartbeat(1, 2, 3),
		{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, LogTerm: 2, Index: 9, Commit: 8,
			Entries: []raftpb.Entry{{Term: 3, Index: 10, Data: []byte("put k v")}, {Term: 3, Index: 11}}},
		{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 3, Index: 9, Reject: true, RejectHint: 4, HintTerm: 1},
		{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 3, Snapshot: &raftpb.Snapshot{
			Metadata: raftpb.SnapshotMetadata{Index: 7, Term: 2, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}}},
			Data:     []byte("image")}},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var b []byte
	for _, m := range sampleMessages() {
		var err error
		if b, err = appendFrame(b, &m, 1024); err != nil {
			t.Fatal(err)
		}
	}
	fr := frameReader{r: bytes.NewReader(b), max: 1024}
	for i, want := range sampleMessages() {
		body, err := fr.next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got, err := raftpb.UnmarshalMessage(body)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("frame %d: got %+v, %v; want %+v", i, got, err, want)
		}
	}
	if _, err := fr.next(); err != io.EOF {
		t.Fatalf("after the last frame: got %v, want io.EOF", err)
	}
}

func TestAppendFrameRefusesOversize(t *testing.T) {
	m := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: make([]byte, 2000)}}}
	prefix := []byte("kept")
	b, err := appendFrame(prefix, &m, 1024)
	if !errors.Is(err, errFrameTooLarge) || string(b) != "kept" {
		t.Fatalf("got %q, %v; want the prefix unchanged and errFrameTooLarge", b, err)
	}
}

func frameHeader(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

func TestFrameReaderRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"empty frame":      {frameHeader(0), errEmptyFrame},
		"oversize":         {frameHeader(1025), errFrameTooLarge},
		"max uint32":       {frameHeader(1<<32 - 1), errFrameTooLarge},
		"partial header":   {[]byte{0, 0}, io.ErrUnexpectedEOF},
		"truncated body":   {append(frameHeader(10), 1, 2, 3), io.ErrUnexpectedEOF},
		"header then EOF":  {frameHeader(10), io.ErrUnexpectedEOF},
		"nothing (clean)":  {nil, io.EOF},
		"limit is allowed": {append(frameHeader(1024), make([]byte, 1024)...), nil},
	} {
		t.Run(name, func(t *testing.T) {
			fr := frameReader{r: bytes.NewReader(tc.in), max: 1024}
			if _, err := fr.next(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// A peer that announces a large frame and then sends little must not make
// the reader allocate what it announced.
func TestFrameReaderAllocatesOnlyWhatArrives(t *testing.T) {
	for name, tc := range map[string]struct {
		announce uint32
		max      int
	}{
		"above the limit":  {1<<32 - 1, 64 << 20},
		"within the limit": {60 << 20, 64 << 20},
	} {
		t.Run(name, func(t *testing.T) {
			in := append(frameHeader(tc.announce), make([]byte, 100)...)
			fr := frameReader{r: bytes.NewReader(in), max: tc.max}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := fr.next()
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("a truncated frame was accepted")
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 2*readGrowStep {
				t.Fatalf("allocated %d bytes for a frame with 100 bytes of body", got)
			}
		})
	}
}

func TestFrameReaderDropsLargeBuffer(t *testing.T) {
	var b []byte
	big := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: make([]byte, 3*readRetain)}}}
	small := heartbeat(1, 2, 1)
	for _, m := range []*raftpb.Message{&big, &small} {
		var err error
		if b, err = appendFrame(b, m, 4*readRetain); err != nil {
			t.Fatal(err)
		}
	}
	fr := frameReader{r: bytes.NewReader(b), max: 4 * readRetain}
	for range 2 {
		if _, err := fr.next(); err != nil {
			t.Fatal(err)
		}
	}
	if cap(fr.buf) > readRetain {
		t.Fatalf("buffer of %d bytes kept after a small frame", cap(fr.buf))
	}
}

func TestBackoff(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	prevMax := time.Duration(0)
	for attempt := range 100 {
		ceiling := min(backoffMin<<min(attempt, 16), backoffMax)
		for range 50 {
			d := backoff(attempt, rng)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
		if ceiling < prevMax {
			t.Fatalf("attempt %d: ceiling %v shrank from %v", attempt, ceiling, prevMax)
		}
		prevMax = ceiling
	}
}

// FuzzFrameReader feeds arbitrary bytes to the frame reader: it must never
// panic, never return a body over its limit, and read back exactly the
// frames a writer would produce for the bodies it accepted.
func FuzzFrameReader(f *testing.F) {
	var stream []byte
	for _, m := range sampleMessages() {
		stream, _ = appendFrame(stream, &m, 1<<10)
	}
	f.Add(stream)
	f.Add(frameHeader(0))
	f.Add(frameHeader(1 << 31))
	f.Add(append(frameHeader(5), 1, 2))
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 1 << 10
		fr := frameReader{r: bytes.NewReader(in), max: limit}
		var again []byte
		for {
			body, err := fr.next()
			if err != nil {
				break
			}
			if len(body) == 0 || len(body) > limit {
				t.Fatalf("body of %d bytes accepted with limit %d", len(body), limit)
			}
			again = append(binary.BigEndian.AppendUint32(again, uint32(len(body))), body...)
			// Whatever the framing lets through must be safe to decode.
			_, _ = raftpb.UnmarshalMessage(body)
		}
		if !bytes.HasPrefix(in, again) {
			t.Fatal("frames read back differ from the input")
		}
	})
}

// FuzzParseHandshake checks that the handshake and answer decoders never
// panic and accept only what re-encodes to the same bytes.
func FuzzParseHandshake(f *testing.F) {
	f.Add(handshake{version: protocolVersion, kind: kindMessages, clusterID: 7, from: 1, to: 2}.appendTo(nil))
	f.Add(appendAnswer(nil, statusWrongCluster))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n...."))
	f.Fuzz(func(t *testing.T, in []byte) {
		if h, err := parseHandshake(in); err == nil && !bytes.Equal(h.appendTo(nil), in) {
			t.Fatalf("handshake %+v re-encodes differently", h)
		}
		if s, err := parseAnswer(in); err == nil && !bytes.Equal(appendAnswer(nil, s), in) {
			t.Fatalf("answer %d re-encodes differently", s)
		}
	})
}
