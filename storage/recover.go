package storage

import (
	"fmt"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/wal"
)

// replay rebuilds the in-memory view from the WAL's records.
type replay struct {
	hs raftpb.HardState
	// started: a base record has been seen, so the log's start is known.
	started bool
	// baseKnown is false when an overwrite reached back before the first
	// base seen (possible once older segments are compacted away): the
	// log then starts after an entry whose term is unknown.
	baseKnown bool
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// record applies one WAL record to s's view. Errors are wrapped by the WAL
// with the file and offset.
func (r *replay) record(s *Storage, pos wal.Pos, typ wal.RecordType, p []byte) error {
	x := &s.idx
	switch typ {
	case recEntry:
		e, err := raftpb.UnmarshalEntry(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if !r.started {
			return corruptf("entry %d before the segment's base record", e.Index)
		}
		if e.Index == 0 || e.Index > x.last()+1 {
			return corruptf("entry %d does not follow the log's last entry %d", e.Index, x.last())
		}
		if e.Index <= x.base {
			x.reset(e.Index-1, 0)
			s.cache.clear()
			r.baseKnown = false
		}
		x.truncate(e.Index)
		s.cache.truncate(e.Index)
		if prev := e.Index - 1; (prev > x.base || r.baseKnown) && e.Term < x.term(prev) {
			return corruptf("entry %d has term %d, lower than the term %d of the entry before", e.Index, e.Term, x.term(prev))
		}
		x.append(e.Term, pos.Seq, pos.Off)
		s.cache.append(e)
	case recHardState:
		hs, err := raftpb.UnmarshalHardState(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		r.hs = hs
	case recBase:
		m, err := raftpb.UnmarshalSnapshotMetadata(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if !r.started {
			x.reset(m.Index, m.Term)
			r.started, r.baseKnown = true, true
			return nil
		}
		last := x.last()
		if m.Index != last || ((last > x.base || r.baseKnown) && m.Term != x.term(last)) {
			return corruptf("segment starts after entry %d (term %d), but the log before it ends at entry %d", m.Index, m.Term, last)
		}
	case recReset:
		m, err := raftpb.UnmarshalSnapshotMetadata(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if !r.started {
			return corruptf("reset before the segment's base record")
		}
		x.reset(m.Index, m.Term)
		s.cache.clear()
		r.baseKnown = true
	default:
		return corruptf("unknown record type %d", typ)
	}
	return nil
}

// recover finishes Open once the WAL has been replayed into r: it makes
// the log continue from the newest valid snapshot, or refuses.
func (s *Storage) recover(r *replay, sm raftpb.SnapshotMetadata, haveSnap bool) error {
	x := &s.idx
	walDir := s.wal.Segments()
	if !r.started {
		if haveSnap {
			return fmt.Errorf("storage: %s: %w: snapshot %s exists but the log is empty", s.dir, ErrCorrupt, snapName(sm))
		}
		return s.cut()
	}
	where := func(format string, args ...any) error {
		return fmt.Errorf("storage: %s (segments %d..%d): %w", s.dir, walDir[0], walDir[len(walDir)-1], corruptf(format, args...))
	}
	if !haveSnap {
		if x.base != 0 || !r.baseKnown {
			return where("the log starts after entry %d but there is no valid snapshot", x.base)
		}
	}
	reset := false
	switch {
	case !haveSnap:
	case sm.Index < x.base:
		return where("the newest valid snapshot %s ends at entry %d, but the log starts after entry %d: entries %d..%d are missing",
			snapName(sm), sm.Index, x.base, sm.Index+1, x.base)
	case sm.Index == x.base:
		if r.baseKnown && x.baseTerm != sm.Term {
			return where("the log starts after entry %d of term %d, but snapshot %s has term %d", x.base, x.baseTerm, snapName(sm), sm.Term)
		}
		x.baseTerm, r.baseKnown = sm.Term, true
	case !x.has(sm.Index, sm.Term):
		// The snapshot is durable but the crash came before its reset
		// record: finish what SaveSnapshot started.
		reset = true
	}
	if !r.baseKnown {
		// The log starts after an entry of unknown term; the entry
		// after it is covered by the snapshot, so make it the base.
		x.compact(x.base + 1)
		s.cache.compact(x.base)
	}
	s.hs, s.snap = r.hs, sm
	if reset {
		if err := s.applyReset(sm); err != nil {
			return err
		}
	}
	if s.hs.Commit < s.snap.Index {
		// A snapshot is committed state; its Save of the hard state may
		// not have happened before the crash.
		s.hs.Commit = s.snap.Index
	}
	if s.hs.Commit > x.last() {
		return where("the hard state commits entry %d but the log ends at entry %d: entries were lost", s.hs.Commit, x.last())
	}
	return nil
}

func snapName(m raftpb.SnapshotMetadata) string { return fmt.Sprintf("%d/%d", m.Index, m.Term) }
