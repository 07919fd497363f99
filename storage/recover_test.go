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
	"github.com/raftkv/raftkv/storage/snap"
	"github.com/raftkv/raftkv/storage/wal"
)

// TestReplayOverwriteBeforeSegmentBase: once older segments are compacted
// away, the first segment left may hold an overwrite reaching back before
// its own base record. Replay then starts after an entry of unknown term,
// which the snapshot must settle.
func TestReplayOverwriteBeforeSegmentBase(t *testing.T) {
	for _, tc := range []struct {
		name              string
		overwriteAt, snap uint64
		keep              uint64
		wantFirst         uint64
	}{
		// The snapshot is past the unknown base: the entry after the
		// base becomes the base.
		{"snapshot after base", 5, 6, 2, 6},
		{"snapshot after base, keep 1", 5, 6, 1, 6},
		// The snapshot is at the unknown base: it gives the term.
		{"snapshot at base", 7, 6, 0, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := vfs.NewMem()
			opts := memOpts(m, nil)
			opts.SegmentSize = 1 // every write starts a segment
			opts.KeepEntries = tc.keep
			s := mustOpen(t, opts)
			mustSave(t, s, raftpb.HardState{Term: 1}, ents(1, 10, 1))
			mustSave(t, s, raftpb.HardState{Term: 2}, ents(tc.overwriteAt, tc.overwriteAt+1, 2))
			last := tc.overwriteAt + 1
			mustSave(t, s, raftpb.HardState{Term: 2, Commit: last}, nil)
			snapTerm, _ := s.Term(tc.snap)
			if err := s.SaveSnapshot(snapshotAt(tc.snap, snapTerm, "state")); err != nil {
				t.Fatal(err)
			}
			if err := s.Compact(tc.snap); err != nil {
				t.Fatal(err)
			}
			// Segment 0 holds only its opening, 1 entries 1..10, 2 the
			// overwrite: the first retained must be 2.
			if segs := s.wal.Segments(); segs[0] != 2 {
				t.Fatalf("segments %v: the first retained should be 2", segs)
			}
			want, _ := s.Entries(tc.wantFirst, last+1, 1<<20)
			_ = s.Close()

			s = mustOpen(t, opts)
			first, _ := s.FirstIndex()
			if first != tc.wantFirst {
				t.Fatalf("first index %d, want %d", first, tc.wantFirst)
			}
			got, err := s.Entries(first, last+1, 1<<20)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("entries %v %v, want %v", got, err, want)
			}
			if term, err := s.Term(first - 1); err != nil || term == 0 {
				t.Fatalf("Term(first-1) = %d, %v", term, err)
			}
		})
	}
}

// TestNewestSnapshotDamaged: a damaged newest snapshot is skipped with a
// warning. If the log still reaches back to the older snapshot nothing is
// lost and Open succeeds; if it does not, Open refuses.
func TestNewestSnapshotDamaged(t *testing.T) {
	for _, compacted := range []bool{false, true} {
		t.Run(fmt.Sprint("compacted=", compacted), func(t *testing.T) {
			m := vfs.NewMem()
			opts := memOpts(m, nil)
			s := mustOpen(t, opts)
			saveEach(t, s, raftpb.HardState{Term: 1}, ents(1, 40, 1))
			mustSave(t, s, raftpb.HardState{Term: 1, Commit: 30}, nil)
			if err := s.SaveSnapshot(snapshotAt(30, 1, "at 30")); err != nil {
				t.Fatal(err)
			}
			if compacted {
				if err := s.Compact(30); err != nil {
					t.Fatal(err)
				}
			}
			_ = s.Close()
			// An older snapshot left behind by a crash before pruning.
			snapDir := filepath.Join(testDir, "snap")
			writeSnapFile(t, m, snapshotAt(10, 1, "at 10"))
			newest := filepath.Join(snapDir, snap.Name(30, 1))
			b, _ := m.ReadFile(newest)
			b[len(b)-1] ^= 1
			m.WriteFile(newest, b)

			var logs bytes.Buffer
			s, err := Open(testDir, memOpts(m, &logs))
			if !strings.Contains(logs.String(), newest) {
				t.Fatalf("no warning naming %s: %q", newest, logs.String())
			}
			if compacted {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "missing") {
					t.Fatalf("got %v, want ErrCorrupt about missing entries", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sn, err := s.Snapshot()
			if err != nil || sn.Metadata.Index != 10 {
				t.Fatalf("Snapshot: %+v %v, want the one at 10", sn.Metadata, err)
			}
			if first, _ := s.FirstIndex(); first != 1 {
				t.Fatalf("first index %d, want 1", first)
			}
		})
	}
}

func TestSnapshotDisagreeingWithLogBaseRefused(t *testing.T) {
	m := vfs.NewMem()
	opts := memOpts(m, nil)
	s := mustOpen(t, opts)
	mustSave(t, s, raftpb.HardState{Term: 1, Commit: 2}, ents(1, 3, 1))
	if err := s.SaveSnapshot(snapshotAt(20, 3, "leader's")); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// Swap the snapshot for one at the same index with another term.
	snapDir := filepath.Join(testDir, "snap")
	m.RemoveFile(filepath.Join(snapDir, snap.Name(20, 3)))
	writeSnapFile(t, m, snapshotAt(20, 2, "impostor"))
	if _, err := Open(testDir, opts); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "term") {
		t.Fatalf("got %v, want ErrCorrupt about the term", err)
	}
}

// TestSegmentLosingItsEndRefused: a segment that is not the last, cut at a
// record boundary, looks clean by itself; the next segment's base record
// (where the log ended when it was created) shows the loss.
func TestSegmentLosingItsEndRefused(t *testing.T) {
	m := vfs.NewMem()
	opts := memOpts(m, nil)
	opts.SegmentSize = 1
	s := mustOpen(t, opts)
	mustSave(t, s, raftpb.HardState{Term: 1}, ents(1, 5, 1))
	mustSave(t, s, raftpb.HardState{Term: 1}, ents(6, 6, 1))
	_ = s.Close()
	// Segment 0 holds only its opening, 1 entries 1..5, 2 entry 6.
	first := filepath.Join(testDir, "wal", "0000000000000001.wal")
	b, _ := m.ReadFile(first)
	// Drop entry 5 and what follows it: the hard state and the seal.
	offs := recordOffsets(t, b)
	m.WriteFile(first, b[:offs[len(offs)-3]])
	if _, err := Open(testDir, opts); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "segment starts after entry 5") {
		t.Fatalf("got %v, want ErrCorrupt about the base record", err)
	}
}

// TestCommitBeyondLogRefused: a hard state committing entries the log does
// not have means entries were lost.
func TestCommitBeyondLogRefused(t *testing.T) {
	m := vfs.NewMem()
	opts := memOpts(m, nil)
	s := mustOpen(t, opts)
	_ = s.Close()
	w, err := wal.Open(filepath.Join(testDir, "wal"), wal.Options{FS: m}, func(wal.Pos, wal.RecordType, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	var b wal.Batch
	b.Add(recHardState, raftpb.HardState{Term: 1, Commit: 5}.MarshalAppend(nil))
	if _, err := w.Write(&b); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	if _, err := Open(testDir, opts); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "commits entry 5") {
		t.Fatalf("got %v, want ErrCorrupt about the commit index", err)
	}
}

// recordOffsets returns where each record of a segment file starts.
func recordOffsets(t *testing.T, b []byte) []int {
	t.Helper()
	var offs []int
	for off := 0; off < len(b); {
		_, _, n, err := wal.DecodeRecord(b[off:])
		if err != nil {
			t.Fatalf("record at %d: %v", off, err)
		}
		offs = append(offs, off)
		off += n
	}
	return offs
}
