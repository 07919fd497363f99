package wal

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	var buf []byte
	payloads := [][]byte{nil, []byte("x"), bytes.Repeat([]byte("ab"), 1000)}
	for i, p := range payloads {
		buf = AppendRecord(buf, RecordType(i+1), p)
	}
	rest := buf
	for i, want := range payloads {
		typ, got, n, err := DecodeRecord(rest)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if typ != RecordType(i+1) || !bytes.Equal(got, want) {
			t.Fatalf("record %d: got type %d payload %q, want type %d payload %q", i, typ, got, i+1, want)
		}
		rest = rest[n:]
	}
	if _, _, _, err := DecodeRecord(rest); err != io.EOF {
		t.Fatalf("after the last record: got %v, want io.EOF", err)
	}

	rd := NewReader(bytes.NewReader(buf), 0, int64(len(buf)))
	for i, want := range payloads {
		typ, got, err := rd.Next()
		if err != nil || typ != RecordType(i+1) || !bytes.Equal(got, want) {
			t.Fatalf("Reader record %d: got %d %q %v, want %d %q", i, typ, got, err, i+1, want)
		}
	}
	if _, _, err := rd.Next(); err != io.EOF {
		t.Fatalf("Reader at the end: got %v, want io.EOF", err)
	}
}

func TestDecodeRecordDamage(t *testing.T) {
	rec := AppendRecord(nil, 7, []byte("payload"))
	for cut := 1; cut < len(rec); cut++ {
		if _, _, _, err := DecodeRecord(rec[:cut]); err != io.ErrUnexpectedEOF {
			t.Errorf("cut at %d: got %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
	for bit := 0; bit < len(rec)*8; bit++ {
		b := bytes.Clone(rec)
		b[bit/8] ^= 1 << (bit % 8)
		_, _, _, err := DecodeRecord(b)
		// A flipped length bit can make the record look cut short;
		// everything else must be reported as corrupt.
		if err == nil || (!errors.Is(err, ErrCorrupt) && err != io.ErrUnexpectedEOF) {
			t.Errorf("bit %d flipped: got %v, want a corruption error", bit, err)
		}
	}
	huge := bytes.Clone(rec)
	huge[3] = 0xff
	if _, _, _, err := DecodeRecord(huge); !errors.Is(err, ErrCorrupt) {
		t.Errorf("oversized length: got %v, want ErrCorrupt", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendRecord(nil, 1, []byte("hello")))
	f.Add(AppendRecord(AppendRecord(nil, 2, nil), 3, []byte{0, 1, 2}))
	f.Add(make([]byte, FrameSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, p, n, err := DecodeRecord(b)
		if err != nil {
			if n != 0 || p != nil {
				t.Fatalf("error %v with n=%d payload=%q", err, n, p)
			}
			return
		}
		if n > len(b) || n != FrameSize+len(p) {
			t.Fatalf("n=%d for a %d byte payload in %d bytes", n, len(p), len(b))
		}
		if again := AppendRecord(nil, typ, p); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs: %x, want %x", again, b[:n])
		}
		rd := NewReader(bytes.NewReader(b), 0, int64(len(b)))
		typ2, p2, err := rd.Next()
		if err != nil || typ2 != typ || !bytes.Equal(p2, p) {
			t.Fatalf("Reader disagrees with DecodeRecord: %d %q %v", typ2, p2, err)
		}
	})
}
