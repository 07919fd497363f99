package storage

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
)

// smallLog builds a log over three segments whose last record is the
// single entry 9, saved on its own, and returns the disk and the entries.
func smallLog(t *testing.T) (*vfs.Mem, []raftpb.Entry) {
	t.Helper()
	m := vfs.NewMem()
	opts := memOpts(m, nil)
	opts.SegmentSize = 100
	s := mustOpen(t, opts)
	mustSave(t, s, raftpb.HardState{Term: 1, Vote: 1}, ents(1, 4, 1))
	mustSave(t, s, raftpb.HardState{Term: 2, Vote: 1, Commit: 3}, ents(4, 8, 2))
	mustSave(t, s, raftpb.HardState{}, ents(9, 9, 2))
	if n := len(s.wal.Segments()); n != 3 {
		t.Fatalf("%d segments, want 3", n)
	}
	_ = s.Close()
	return m, append(ents(1, 3, 1), ents(4, 9, 2)...)
}

func segmentPaths(t *testing.T, m *vfs.Mem) []string {
	t.Helper()
	dir := filepath.Join(testDir, "wal")
	names, err := m.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		names[i] = filepath.Join(dir, names[i])
	}
	return names
}

// recovered opens the damaged disk and returns its entries, or the error.
func recovered(t *testing.T, m *vfs.Mem) ([]raftpb.Entry, string, error) {
	t.Helper()
	var logs bytes.Buffer
	s, err := Open(testDir, memOpts(m, &logs))
	if err != nil {
		return nil, logs.String(), err
	}
	defer s.Close()
	last, _ := s.LastIndex()
	es, err := s.Entries(1, last+1, 1<<20)
	return es, logs.String(), err
}

// TestTruncateLastRecordAtEveryOffset: a crash while writing the last
// record leaves any prefix of it; recovery gives back the log as it was
// before that record, with a warning naming the file and offset.
func TestTruncateLastRecordAtEveryOffset(t *testing.T) {
	base, want := smallLog(t)
	paths := segmentPaths(t, base)
	last := paths[len(paths)-1]
	orig, _ := base.ReadFile(last)
	offs := recordOffsets(t, orig)
	start := offs[len(offs)-1]
	for cut := start; cut < len(orig); cut++ {
		m := base.Crash(nil)
		m.WriteFile(last, orig[:cut])
		got, logs, err := recovered(t, m)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if !reflect.DeepEqual(got, want[:len(want)-1]) {
			t.Fatalf("cut at %d: recovered %d entries, want %d", cut, len(got), len(want)-1)
		}
		if wantLog := fmt.Sprintf("file=%s offset=%d", last, start); cut > start && !strings.Contains(logs, wantLog) {
			t.Fatalf("cut at %d: log %q lacks %q", cut, logs, wantLog)
		}
	}
}

// TestFlippedBitDetected flips every bit of every segment: Open refuses
// with ErrCorrupt naming the file and an offset, except in the last record
// of the last segment, whose damage cannot be told from a torn write: that
// record is cut off with a warning. Damage is never accepted as data.
func TestFlippedBitDetected(t *testing.T) {
	base, want := smallLog(t)
	paths := segmentPaths(t, base)
	for si, path := range paths {
		orig, _ := base.ReadFile(path)
		offs := recordOffsets(t, orig)
		lastRecord := si == len(paths)-1
		for bit := range len(orig) * 8 {
			m := base.Crash(nil)
			b := bytes.Clone(orig)
			b[bit/8] ^= 1 << (bit % 8)
			m.WriteFile(path, b)
			got, logs, err := recovered(t, m)
			if lastRecord && bit/8 >= offs[len(offs)-1] {
				if err != nil || !reflect.DeepEqual(got, want[:len(want)-1]) || !strings.Contains(logs, path) {
					t.Fatalf("%s bit %d (last record): %d entries, %v, log %q", path, bit, len(got), err, logs)
				}
				continue
			}
			if err == nil && bit/8 >= len(orig)-17 && si < len(paths)-1 && reflect.DeepEqual(got, want) {
				continue // a seal damaged into a torn seal loses nothing
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "offset") {
				t.Fatalf("%s bit %d: got %v, want ErrCorrupt naming the file and offset", path, bit, err)
			}
		}
	}
}

func TestZeroFilledOrMissingSegmentDetected(t *testing.T) {
	base, _ := smallLog(t)
	for _, path := range segmentPaths(t, base) {
		orig, _ := base.ReadFile(path)
		m := base.Crash(nil)
		m.WriteFile(path, make([]byte, len(orig)))
		if _, _, err := recovered(t, m); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s zero-filled: got %v", path, err)
		}
		m = base.Crash(nil)
		m.RemoveFile(path)
		if _, _, err := recovered(t, m); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s missing: got %v", path, err)
		}
	}
}
