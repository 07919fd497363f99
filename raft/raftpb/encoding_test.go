package raftpb

import (
	"errors"
	"reflect"
	"testing"
)

func sampleMessages() []Message {
	return []Message{
		{Type: MsgHeartbeat, From: 1, To: 2, Term: 3, Commit: 9},
		{Type: MsgApp, From: 1, To: 3, Term: 5, LogTerm: 4, Index: 10, Commit: 9, Entries: []Entry{
			{Term: 5, Index: 11, Data: []byte("set a 1")},
			{Term: 5, Index: 12, Type: EntryConfChange, Data: []byte{0, 1, 2}},
			{Term: 5, Index: 13},
		}},
		{Type: MsgAppResp, From: 3, To: 1, Term: 5, Index: 10, Reject: true, RejectHint: 7, HintTerm: 2},
		{Type: MsgVote, From: 2, To: 1, Term: 6, LogTerm: 5, Index: 13, Context: []byte("transfer")},
		{Type: MsgSnap, From: 1, To: 2, Term: 6, Snapshot: &Snapshot{
			Metadata: SnapshotMetadata{Index: 100, Term: 6, ConfState: ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}},
			Data:     []byte("image"),
		}},
		{Type: MsgReadIndexResp, From: 1, To: 2, Term: 6, Index: 40, Context: []byte{0xff, 0}},
		{Type: MsgTransferLeader, From: 3, To: 1, Index: 2},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b := m.MarshalAppend(nil)
		if len(b) > m.Size() {
			t.Errorf("%v: encoded %d bytes, Size() promised at most %d", m, len(b), m.Size())
		}
		got, err := UnmarshalMessage(b)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestMessageDecodeDoesNotAlias(t *testing.T) {
	m := Message{Type: MsgApp, From: 1, To: 2, Entries: []Entry{{Term: 1, Index: 1, Data: []byte("abc")}}}
	b := m.MarshalAppend(nil)
	got, err := UnmarshalMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if string(got.Entries[0].Data) != "abc" {
		t.Fatalf("decoded entry changed with the input buffer: %q", got.Entries[0].Data)
	}
}

func TestMessageDecodeRejects(t *testing.T) {
	good := sampleMessages()[1].MarshalAppend(nil)
	local := (&Message{Type: MsgUnreachable, From: 1, To: 2}).MarshalAppend(nil)
	cases := map[string][]byte{
		"empty":          nil,
		"bad version":    append([]byte{9}, good[1:]...),
		"unknown type":   {Version, 200, 0},
		"local type":     local,
		"truncated":      good[:len(good)-3],
		"trailing bytes": append(append([]byte{}, good...), 0),
		"huge count":     {Version, byte(MsgApp), 0, 1, 2, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := UnmarshalMessage(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestEntryAndStateRoundTrip(t *testing.T) {
	e := Entry{Term: 7, Index: 1 << 40, Type: EntryConfChange, Data: []byte("x")}
	if got, err := UnmarshalEntry(e.MarshalAppend(nil)); err != nil || !reflect.DeepEqual(got, e) {
		t.Errorf("entry: got %+v, %v; want %+v", got, err, e)
	}
	h := HardState{Term: 3, Vote: 2, Commit: 99}
	if got, err := UnmarshalHardState(h.MarshalAppend(nil)); err != nil || got != h {
		t.Errorf("hard state: got %+v, %v; want %+v", got, err, h)
	}
	md := SnapshotMetadata{Index: 5, Term: 2, ConfState: ConfState{Voters: []uint64{1, 2}}}
	if got, err := UnmarshalSnapshotMetadata(md.MarshalAppend(nil)); err != nil || !reflect.DeepEqual(got, md) {
		t.Errorf("snapshot metadata: got %+v, %v; want %+v", got, err, md)
	}
}

// FuzzUnmarshalMessage checks that any input either fails cleanly or
// decodes to a message that re-encodes to the same bytes.
func FuzzUnmarshalMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m.MarshalAppend(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := UnmarshalMessage(b)
		if err != nil {
			return
		}
		again, err := UnmarshalMessage(m.MarshalAppend(nil))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("unstable round trip: %+v vs %+v", again, m)
		}
	})
}

func FuzzUnmarshalEntry(f *testing.F) {
	f.Add((&Entry{Term: 1, Index: 2, Data: []byte("d")}).MarshalAppend(nil))
	f.Add(HardState{Term: 1}.MarshalAppend(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := UnmarshalEntry(b); err == nil {
			if _, err := UnmarshalEntry(e.MarshalAppend(nil)); err != nil {
				t.Fatalf("re-encoded entry does not decode: %v", err)
			}
		}
		_, _ = UnmarshalHardState(b)
		_, _ = UnmarshalSnapshotMetadata(b)
	})
}

func BenchmarkMessageMarshal(b *testing.B) {
	m := sampleMessages()[1]
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.MarshalAppend(buf[:0])
	}
}

func BenchmarkMessageUnmarshal(b *testing.B) {
	enc := sampleMessages()[1].MarshalAppend(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := UnmarshalMessage(enc); err != nil {
			b.Fatal(err)
		}
	}
}
