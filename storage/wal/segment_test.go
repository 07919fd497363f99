package wal

import (
	"io"
	"testing"
)

// sparse is a file of zeros holding one record at a given offset.
type sparse struct {
	rec      []byte
	at, size int64
}

func (s sparse) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	if lo, hi := max(off, s.at), min(off+int64(len(p)), s.at+int64(len(s.rec))); lo < hi {
		copy(p[lo-off:], s.rec[lo-s.at:hi-s.at])
	}
	if off+int64(len(p)) > s.size {
		return int(max(0, s.size-off)), io.EOF
	}
	return len(p), nil
}

func TestFindIntactAcrossWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("scans files of a few hundred MiB")
	}
	const step = FrameSize + MaxRecordSize
	big := AppendRecord(nil, 1, make([]byte, MaxRecordSize))
	small := AppendRecord(nil, 1, []byte("intact"))
	for _, tc := range []struct {
		name string
		rec  []byte
		at   int64 // -1: no record
	}{
		{"none", nil, -1},
		{"first window", small, 100},
		{"largest record ending a window", big, step - 1},
		{"second window", small, step + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := int64(1)
			size := from + 2*step + 10
			at := tc.at
			if at >= 0 {
				at += from
			}
			got, err := findIntact(sparse{rec: tc.rec, at: at, size: size}, from, size)
			if err != nil || got != at {
				t.Fatalf("findIntact = %d, %v; want %d", got, err, at)
			}
		})
	}
}
