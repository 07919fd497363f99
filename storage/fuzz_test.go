package storage

import (
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
	"github.com/raftkv/raftkv/storage/wal"
)

// FuzzReplay writes well-framed but arbitrary records (entries, hard
// states, base and reset records with fuzzed indexes and terms) after a
// valid segment opening, then opens the storage: recovery must refuse or
// succeed without panicking, and if it succeeds every read must work.
// Each record is three input bytes: kind, a, b.
func FuzzReplay(f *testing.F) {
	f.Add([]byte{0, 1, 1, 0, 2, 1, 1, 1, 2, 0, 2, 2})   // entries 1, 2, hard state, overwrite
	f.Add([]byte{0, 1, 1, 3, 9, 2, 0, 10, 2, 2, 10, 2}) // reset to 9, entry 10, base
	f.Add([]byte{0, 5, 1})                              // a gap
	f.Fuzz(func(t *testing.T, b []byte) {
		m := vfs.NewMem()
		opts := memOpts(m, nil)
		s, err := Open(testDir, opts)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		w, err := wal.Open(filepath.Join(testDir, "wal"), wal.Options{FS: m}, func(wal.Pos, wal.RecordType, []byte) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		var batch wal.Batch
		for ; len(b) >= 3; b = b[3:] {
			a, c := uint64(b[1]), uint64(b[2])
			switch b[0] % 4 {
			case 0:
				batch.Add(recEntry, (&raftpb.Entry{Index: a, Term: c, Data: []byte{b[0]}}).MarshalAppend(nil))
			case 1:
				batch.Add(recHardState, raftpb.HardState{Term: a, Vote: 1, Commit: c}.MarshalAppend(nil))
			case 2:
				batch.Add(recBase, (&raftpb.SnapshotMetadata{Index: a, Term: c}).MarshalAppend(nil))
			case 3:
				batch.Add(recReset, (&raftpb.SnapshotMetadata{Index: a, Term: c}).MarshalAppend(nil))
			}
		}
		if _, err := w.Write(&batch); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
		s, err = Open(testDir, opts)
		if err != nil {
			return
		}
		defer s.Close()
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		hs, _, _ := s.InitialState()
		if hs.Commit > last || first > last+1 {
			t.Fatalf("first %d last %d commit %d", first, last, hs.Commit)
		}
		for i := first - 1; i <= last; i++ {
			if _, err := s.Term(i); err != nil {
				t.Fatalf("Term(%d): %v", i, err)
			}
		}
		es, err := s.Entries(first, last+1, 1<<30)
		if err != nil || uint64(len(es)) != last+1-first {
			t.Fatalf("Entries(%d, %d): %d entries, %v", first, last+1, len(es), err)
		}
		for k, e := range es {
			if e.Index != first+uint64(k) {
				t.Fatalf("entry %d at position %d", e.Index, k)
			}
		}
	})
}
