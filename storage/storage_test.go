package storage

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testenv"
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
)

func TestFreshStorage(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMem(), nil))
	hs, cs, err := s.InitialState()
	if err != nil || !hs.IsEmpty() || len(cs.Voters) != 0 {
		t.Fatalf("InitialState: %+v %+v %v", hs, cs, err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 1 || last != 0 {
		t.Fatalf("first %d last %d, want 1 and 0", first, last)
	}
	if term, err := s.Term(0); term != 0 || err != nil {
		t.Fatalf("Term(0) = %d, %v", term, err)
	}
	if _, err := s.Term(1); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("Term(1): got %v, want ErrUnavailable", err)
	}
	if sn, err := s.Snapshot(); err != nil || !sn.IsEmpty() {
		t.Fatalf("Snapshot: %+v %v", sn, err)
	}
}

func TestSaveOverwriteReopen(t *testing.T) {
	m := vfs.NewMem()
	s := mustOpen(t, memOpts(m, nil))
	mustSave(t, s, raftpb.HardState{Term: 1, Vote: 1}, ents(1, 10, 1))
	mustSave(t, s, raftpb.HardState{Term: 1, Vote: 1, Commit: 3}, nil)
	// A new leader overwrites the conflicting suffix from 6 on.
	mustSave(t, s, raftpb.HardState{Term: 2, Vote: 2, Commit: 3}, ents(6, 8, 2))
	saveEach(t, s, raftpb.HardState{}, ents(9, 30, 2)) // rolls segments
	want := append(ents(1, 5, 1), ents(6, 30, 2)...)
	check := func(s *Storage) {
		t.Helper()
		got, err := s.Entries(1, 31, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("entries:\n got %v\nwant %v", got, want)
		}
		hs, _, _ := s.InitialState()
		if hs != (raftpb.HardState{Term: 2, Vote: 2, Commit: 3}) {
			t.Fatalf("hard state %+v", hs)
		}
		for i := uint64(0); i <= 30; i++ {
			wantTerm := uint64(0)
			if i > 0 {
				wantTerm = want[i-1].Term
			}
			if got, err := s.Term(i); got != wantTerm || err != nil {
				t.Fatalf("Term(%d) = %d, %v; want %d", i, got, err, wantTerm)
			}
		}
	}
	check(s)
	if n := len(s.wal.Segments()); n < 3 {
		t.Fatalf("only %d segments: the test should roll several", n)
	}
	_ = s.Close()
	check(mustOpen(t, memOpts(m, nil)))
}

func TestEntriesSizeLimit(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMem(), nil))
	es := ents(1, 50, 1)
	mustSave(t, s, raftpb.HardState{}, es)
	size := es[0].Size()
	for _, tc := range []struct{ lo, hi, max, n uint64 }{
		{1, 51, 0, 1},                // always at least one
		{1, 51, size - 1, 1},         // even if it is too big
		{1, 51, 3 * size, 3},         // exactly three fit
		{1, 51, 3*size + 1, 3},       // not four
		{45, 51, 1 << 30, 6},         // cache only
		{2, 4, 1 << 30, 2},           // disk only
		{30, 51, 10 * size, 10},      // across disk and cache
		{1, 51, 1 << 62, 50},         // no real limit
		{7, 7, 1 << 30, 0},           // empty range
		{50, 51, 0, 1},               // the last entry
		{1, 2, ^uint64(0), 1},        // the largest limit
		{40, 51, 1 << 30, 11},        // around the cache boundary
		{1, 51, 49*size + 1, 49},     // one short of all
		{1, 51, 50 * size, 50},       // all
		{25, 26, 1 << 30, 1},         // single from disk
		{1, 51, ^uint64(0) / 2, 50},  // large
		{10, 51, ^uint64(0) - 1, 41}, // huge
	} {
		got, err := s.Entries(tc.lo, tc.hi, tc.max)
		if err != nil {
			t.Fatalf("Entries(%d, %d, %d): %v", tc.lo, tc.hi, tc.max, err)
		}
		if uint64(len(got)) != tc.n || (tc.n > 0 && !reflect.DeepEqual(got, es[tc.lo-1:tc.lo-1+tc.n])) {
			t.Fatalf("Entries(%d, %d, %d): got %d entries %v, want %d", tc.lo, tc.hi, tc.max, len(got), got, tc.n)
		}
	}
	if _, err := s.Entries(1, 52, 1<<30); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("past the end: got %v, want ErrUnavailable", err)
	}
	if _, err := s.Entries(0, 2, 1<<30); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("index 0: got %v, want ErrCompacted", err)
	}
}

func TestSaveRejectsInvalid(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMem(), nil))
	hs := raftpb.HardState{Term: 3, Vote: 2, Commit: 5}
	mustSave(t, s, hs, ents(1, 10, 3))
	for name, tc := range map[string]struct {
		hs raftpb.HardState
		es []raftpb.Entry
	}{
		"gap":                  {es: ents(12, 12, 3)},
		"overwrite committed":  {es: ents(5, 6, 4)},
		"not consecutive":      {es: append(ents(11, 11, 3), ents(13, 13, 3)...)},
		"term goes down":       {es: ents(11, 11, 2)},
		"term goes down later": {es: append(ents(11, 11, 4), ents(12, 12, 3)...)},
		"lower hard state":     {hs: raftpb.HardState{Term: 2, Commit: 5}},
		"second vote":          {hs: raftpb.HardState{Term: 3, Vote: 1, Commit: 5}},
		"commit past the end":  {hs: raftpb.HardState{Term: 3, Vote: 2, Commit: 11}},
		"index 0":              {es: []raftpb.Entry{{Index: 0, Term: 3}}},
	} {
		if err := s.Save(tc.hs, tc.es); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	got, _, _ := s.InitialState()
	last, _ := s.LastIndex()
	if got != hs || last != 10 {
		t.Fatalf("after rejected saves: hard state %+v, last %d", got, last)
	}
	// A valid save still works, including a commit covered by its own
	// entries.
	mustSave(t, s, raftpb.HardState{Term: 4, Commit: 12}, ents(6, 12, 4))
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	opts := Options{NodeID: 3, ClusterID: 0xabc, NoSync: true}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	node, cluster, err := ReadIdentity(dir)
	if err != nil || node != 3 || cluster != 0xabc {
		t.Fatalf("ReadIdentity: %d %d %v", node, cluster, err)
	}
	for _, other := range []Options{{NodeID: 4, ClusterID: 0xabc}, {NodeID: 3, ClusterID: 0xabd}} {
		_, err := Open(dir, other)
		if !errors.Is(err, ErrIdentityMismatch) || !strings.Contains(err.Error(), "node 3 of cluster 2748") {
			t.Fatalf("opening as %+v: got %v, want ErrIdentityMismatch naming both", other, err)
		}
	}
	if _, err := Open(t.TempDir(), Options{}); err == nil {
		t.Fatal("NodeID 0 accepted")
	}
}

func TestIdentityMissingOrDamaged(t *testing.T) {
	m := vfs.NewMem()
	s := mustOpen(t, memOpts(m, nil))
	mustSave(t, s, raftpb.HardState{Term: 1}, ents(1, 3, 1))
	_ = s.Close()
	path := filepath.Join(testDir, identityFile)
	orig, _ := m.ReadFile(path)
	for bit := range len(orig) * 8 {
		d := m.Crash(nil)
		b := bytes.Clone(orig)
		b[bit/8] ^= 1 << (bit % 8)
		d.WriteFile(path, b)
		if _, err := Open(testDir, memOpts(d, nil)); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrIdentityMismatch) {
			t.Fatalf("identity bit %d flipped: got %v", bit, err)
		}
	}
	d := m.Crash(nil)
	d.RemoveFile(path)
	if _, err := Open(testDir, memOpts(d, nil)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "identity") {
		t.Fatalf("identity removed: got %v", err)
	}
}

func snapshotAt(index, term uint64, data string) raftpb.Snapshot {
	return raftpb.Snapshot{
		Metadata: raftpb.SnapshotMetadata{Index: index, Term: term, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}}},
		Data:     []byte(data),
	}
}

func TestSnapshotFromLeaderReplacesLog(t *testing.T) {
	m := vfs.NewMem()
	s := mustOpen(t, memOpts(m, nil))
	mustSave(t, s, raftpb.HardState{Term: 1, Commit: 2}, ents(1, 5, 1))
	sn := snapshotAt(20, 3, "state at 20")
	if err := s.SaveSnapshot(sn); err != nil {
		t.Fatal(err)
	}
	mustSave(t, s, raftpb.HardState{Term: 3, Commit: 21}, ents(21, 22, 3))
	check := func(s *Storage) {
		t.Helper()
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		term, _ := s.Term(20)
		hs, cs, _ := s.InitialState()
		got, err := loadSnapshot(s)
		if first != 21 || last != 22 || term != 3 || hs.Commit != 21 || !cs.Equal(sn.Metadata.ConfState) || err != nil || !reflect.DeepEqual(got, sn) {
			t.Fatalf("first %d last %d term(20) %d hs %+v conf %+v snapshot %+v %v", first, last, term, hs, cs, got, err)
		}
	}
	check(s)
	_ = s.Close()
	check(mustOpen(t, memOpts(m, nil)))
}

func TestSnapshotMatchingLogKeepsIt(t *testing.T) {
	m := vfs.NewMem()
	opts := memOpts(m, nil)
	opts.KeepEntries = 2
	s := mustOpen(t, opts)
	saveEach(t, s, raftpb.HardState{Term: 1}, ents(1, 50, 1))
	mustSave(t, s, raftpb.HardState{Term: 1, Commit: 40}, nil)
	if err := s.SaveSnapshot(snapshotAt(40, 1, "state at 40")); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 1 {
		t.Fatalf("a matching snapshot dropped entries: first index %d", first)
	}
	segs := len(s.wal.Segments())
	if err := s.Compact(45); err != nil { // clamped to the snapshot, minus 2 kept
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 39 {
		t.Fatalf("after Compact: first index %d, want 39", first)
	}
	if term, err := s.Term(38); term != 1 || err != nil {
		t.Fatalf("Term(first-1) = %d, %v", term, err)
	}
	if _, err := s.Entries(38, 40, 1<<20); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("compacted entries: got %v, want ErrCompacted", err)
	}
	if after := len(s.wal.Segments()); after >= segs {
		t.Fatalf("Compact deleted no segment (%d before, %d after)", segs, after)
	}
	if err := s.SaveSnapshot(snapshotAt(30, 1, "older")); !errors.Is(err, ErrSnapshotOutOfDate) {
		t.Fatalf("older snapshot: got %v, want ErrSnapshotOutOfDate", err)
	}
	if err := s.SaveSnapshot(snapshotAt(40, 1, "same")); err != nil {
		t.Fatalf("the current snapshot again: %v", err)
	}
	want, _ := s.Entries(39, 51, 1<<20)
	_ = s.Close()
	s = mustOpen(t, opts)
	first, _ := s.FirstIndex()
	if first > 39 {
		t.Fatalf("after reopening: first index %d, want at most 39", first)
	}
	got, err := s.Entries(39, 51, 1<<20)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopening: %v %v", got, err)
	}
}

// TestSnapshotWithoutResetRecord: a crash after the snapshot file was
// written but before the log recorded the reset must still come back
// based on the snapshot, and new entries after it must replay.
func TestSnapshotWithoutResetRecord(t *testing.T) {
	m := vfs.NewMem()
	s := mustOpen(t, memOpts(m, nil))
	mustSave(t, s, raftpb.HardState{Term: 1, Commit: 2}, ents(1, 5, 1))
	_ = s.Close()
	writeSnapFile(t, m, snapshotAt(20, 2, "x"))
	for range 2 {
		s = mustOpen(t, memOpts(m, nil))
		if first, _ := s.FirstIndex(); first != 21 {
			t.Fatalf("first index %d, want 21", first)
		}
		if hs, _, _ := s.InitialState(); hs.Commit != 20 {
			t.Fatalf("commit %d, want the snapshot's 20", hs.Commit)
		}
		last, _ := s.LastIndex()
		mustSave(t, s, raftpb.HardState{}, ents(last+1, last+1, 2))
		_ = s.Close()
	}
}

func TestLogNotReachingSnapshotRefused(t *testing.T) {
	m := vfs.NewMem()
	opts := memOpts(m, nil)
	s := mustOpen(t, opts)
	saveEach(t, s, raftpb.HardState{Term: 1}, ents(1, 50, 1))
	mustSave(t, s, raftpb.HardState{Term: 1, Commit: 40}, nil)
	if err := s.SaveSnapshot(snapshotAt(40, 1, "v1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(40); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// Losing the snapshot file leaves the log without its beginning.
	names, _ := m.List(filepath.Join(testDir, "snap"))
	for _, n := range names {
		m.RemoveFile(filepath.Join(testDir, "snap", n))
	}
	if _, err := Open(testDir, opts); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "no valid snapshot") {
		t.Fatalf("got %v, want ErrCorrupt about the missing snapshot", err)
	}
}

func TestMissingFirstSegmentRefused(t *testing.T) {
	m := vfs.NewMem()
	s := mustOpen(t, memOpts(m, nil))
	saveEach(t, s, raftpb.HardState{Term: 1}, ents(1, 40, 1))
	_ = s.Close()
	m.RemoveFile(filepath.Join(testDir, "wal", "0000000000000000.wal"))
	if _, err := Open(testDir, memOpts(m, nil)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

// TestGroupCommit holds the first fsync until every other Save has queued,
// so the rest must all share the second: two fsyncs for all of them.
func TestGroupCommit(t *testing.T) {
	m := vfs.NewMem()
	opts := memOpts(m, nil)
	opts.SegmentSize = 1 << 20
	var reported []int // entries per OnSync call
	opts.OnSync = func(d time.Duration, entries int) {
		if d < 0 {
			t.Errorf("OnSync reported a negative duration %v", d)
		}
		reported = append(reported, entries) // calls are serialized by the WAL lock
	}
	s := mustOpen(t, opts)
	const savers = 8
	release := make(chan struct{})
	var syncs int
	var syncMu sync.Mutex
	m.SetFail(func(op vfs.Op, name string) error {
		if op != vfs.OpSync {
			return nil
		}
		syncMu.Lock()
		syncs++
		first := syncs == 1
		syncMu.Unlock()
		if first {
			<-release
		}
		return nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, savers)
	for i := range savers {
		wg.Go(func() {
			// Every save is valid in any order: the same hard state,
			// and an entry replacing entry 1.
			errs <- s.Save(raftpb.HardState{Term: 1, Vote: 1}, []raftpb.Entry{{Index: 1, Term: 1, Data: []byte{byte(i)}}})
		})
	}
	testenv.Eventually(t, "the first leader in its fsync, the other saves queued behind it", func() bool {
		s.mu.Lock()
		queued := len(s.pending)
		s.mu.Unlock()
		syncMu.Lock()
		started := syncs
		syncMu.Unlock()
		return started == 1 && queued == savers-1
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if syncs != 2 {
		t.Fatalf("%d saves took %d fsyncs, want 2", savers, syncs)
	}
	if len(reported) != 2 || reported[0]+reported[1] != savers {
		t.Fatalf("OnSync reported %v entries, want 2 fsyncs of %d entries in all", reported, savers)
	}
	if last, _ := s.LastIndex(); last != 1 {
		t.Fatalf("last index %d, want 1", last)
	}
}

func TestFailedSyncRefusesWrites(t *testing.T) {
	m := vfs.NewMem()
	opts := memOpts(m, nil)
	syncs := 0
	opts.OnSync = func(time.Duration, int) { syncs++ }
	s := mustOpen(t, opts)
	mustSave(t, s, raftpb.HardState{Term: 1}, ents(1, 3, 1))
	boom := errors.New("EIO")
	m.SetFail(func(op vfs.Op, _ string) error {
		if op == vfs.OpSync {
			return boom
		}
		return nil
	})
	if err := s.Save(raftpb.HardState{}, ents(4, 4, 1)); !errors.Is(err, ErrFailed) || !errors.Is(err, boom) {
		t.Fatalf("Save with a failing fsync: got %v", err)
	}
	m.SetFail(nil)
	if err := s.Save(raftpb.HardState{}, ents(4, 4, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("Save after a failure: got %v, want ErrFailed", err)
	}
	if last, _ := s.LastIndex(); last != 3 {
		t.Fatalf("the failed entry became visible: last index %d", last)
	}
	if syncs != 1 {
		t.Fatalf("OnSync called %d times, want once: a failed fsync is not reported", syncs)
	}
	_ = s.Close()
	s = mustOpen(t, memOpts(m.Crash(nil), nil))
	if last, _ := s.LastIndex(); last != 3 {
		t.Fatalf("after a crash: last index %d, want 3", last)
	}
}

func TestClose(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMem(), nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Save(raftpb.HardState{Term: 1}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: got %v", err)
	}
	if _, err := s.Entries(1, 2, 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("Entries after Close: got %v", err)
	}
}

func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	opts := Options{NodeID: 1, ClusterID: 1, NoSync: true}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, opts); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: got %v, want ErrLocked", err)
	}
	_ = s.Close()
	s, err = Open(dir, opts)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = s.Close()
}

// TestConcurrentReadsAndWrites reads while another goroutine appends,
// snapshots and compacts (run it with -race). Every read must be
// consistent: the right entries, or ErrCompacted for what was dropped.
func TestConcurrentReadsAndWrites(t *testing.T) {
	opts := memOpts(vfs.NewMem(), nil)
	opts.KeepEntries = 5
	s := mustOpen(t, opts)
	const total = 400
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			for i := uint64(r); ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if i%7 == 0 {
					// Snapshots are replaced and pruned meanwhile.
					if _, err := s.Snapshot(); err != nil {
						t.Errorf("Snapshot: %v", err)
						return
					}
				}
				first, _ := s.FirstIndex()
				last, _ := s.LastIndex()
				if last < first {
					continue
				}
				lo := first + i%(last-first+1)
				es, err := s.Entries(lo, last+1, 1<<12)
				if errors.Is(err, raft.ErrCompacted) {
					continue
				}
				if err != nil {
					t.Errorf("Entries(%d, %d): %v", lo, last+1, err)
					return
				}
				for k, e := range es {
					if want := ents(lo+uint64(k), lo+uint64(k), 1)[0]; !reflect.DeepEqual(e, want) {
						t.Errorf("entry %d: got %v, want %v", lo+uint64(k), e, want)
						return
					}
				}
			}
		})
	}
	for i := uint64(1); i <= total; i++ {
		mustSave(t, s, raftpb.HardState{Term: 1, Commit: i - 1}, ents(i, i, 1))
		if i%50 == 0 {
			if err := s.SaveSnapshot(snapshotAt(i-10, 1, "state")); err != nil {
				t.Fatal(err)
			}
			if err := s.Compact(i - 10); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	wg.Wait()
}
