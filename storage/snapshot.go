package storage

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/snap"
)

// Snapshots go through three steps: CreateSnapshot streams the data into a
// temporary file; SnapshotWriter.Stage completes and fsyncs it, and leaves
// it staged (durable, but not a snapshot: a restart removes it); and
// SaveSnapshot adopts a staged file, installing it under its final name and
// basing the log on it. A snapshot received from a leader is staged by the
// transport and adopted when the raft core's Ready carries it; a snapshot of
// the local state machine goes through the same steps in a row. No step
// holds a whole snapshot in memory.

// snapKey names a snapshot.
type snapKey struct{ index, term uint64 }

func keyOf(m raftpb.SnapshotMetadata) snapKey { return snapKey{m.Index, m.Term} }

// maxStaged bounds the staged files kept waiting for SaveSnapshot: a leader
// sends one snapshot at a time, and one the core never adopts (it was old
// news by the time it arrived) should not pile up on disk. Past the bound,
// the oldest go.
const maxStaged = 4

// SnapshotWriter streams one snapshot's data into the snapshot directory.
// End it with Stage or Abort. It is for one goroutine at a time.
type SnapshotWriter struct {
	s *Storage
	w *snap.Writer
}

// CreateSnapshot starts writing the snapshot m describes. The data written
// is opaque to the Storage.
func (s *Storage) CreateSnapshot(m raftpb.SnapshotMetadata) (*SnapshotWriter, error) {
	if m.Index == 0 {
		return nil, fmt.Errorf("%w: snapshot at index 0", ErrInvalid)
	}
	if err := s.usable(); err != nil {
		return nil, err
	}
	w, err := s.snaps.Create(m)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &SnapshotWriter{s: s, w: w}, nil
}

// Write appends p to the snapshot's data.
func (w *SnapshotWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		return n, fmt.Errorf("storage: %w", err)
	}
	return n, nil
}

// Size returns how many bytes of data were written so far.
func (w *SnapshotWriter) Size() int64 { return w.w.Size() }

// Stage completes the file and makes it durable, and keeps it for
// SaveSnapshot to adopt. A staged file is never used on its own: if the
// node restarts first, it is removed. Staging a snapshot again replaces the
// earlier file.
func (w *SnapshotWriter) Stage() error {
	st, err := w.w.Finish()
	if err != nil {
		return fmt.Errorf("storage: stage snapshot: %w", err)
	}
	s := w.s
	k := keyOf(st.Metadata())
	s.mu.Lock()
	err = s.usableLocked()
	var drop []*snap.Staged
	if err == nil {
		if old := s.staged[k]; old != nil {
			drop = append(drop, old)
		}
		s.staged[k] = st
		drop = append(drop, s.pruneStagedLocked(k)...)
	} else {
		drop = append(drop, st)
	}
	s.mu.Unlock()
	s.removeStaged(drop)
	return err
}

// Abort removes the file. It does nothing after Stage, so it may be
// deferred.
func (w *SnapshotWriter) Abort() { w.w.Abort() }

// pruneStagedLocked takes out of the staged set the files no SaveSnapshot
// can adopt any more (at or below the current snapshot) and, past
// maxStaged, the oldest, sparing keep. The caller removes them, outside mu.
func (s *Storage) pruneStagedLocked(keep snapKey) []*snap.Staged {
	var drop []*snap.Staged
	var left []snapKey
	for k, st := range s.staged {
		switch {
		case k == keep:
		case k.index <= s.snap.Index:
			drop = append(drop, st)
			delete(s.staged, k)
		default:
			left = append(left, k)
		}
	}
	room := maxStaged
	if _, ok := s.staged[keep]; ok {
		room--
	}
	if len(left) > room {
		slices.SortFunc(left, func(a, b snapKey) int { return cmp.Compare(a.index, b.index) })
		for _, k := range left[:len(left)-room] {
			drop = append(drop, s.staged[k])
			delete(s.staged, k)
		}
	}
	return drop
}

func (s *Storage) removeStaged(drop []*snap.Staged) {
	for _, st := range drop {
		if err := st.Remove(); err != nil {
			s.opts.Logger.Warn("storage: could not remove a staged snapshot", "error", err.Error())
		}
	}
}

// SaveSnapshot durably makes sn the current snapshot and bases the log on
// it: if the log holds its last entry (same index and term) it is kept,
// otherwise it is replaced by the snapshot. Older snapshot files are then
// removed. A snapshot older than the current one is refused with
// ErrSnapshotOutOfDate; saving the current one again does nothing.
//
// The snapshot's file must have been staged (CreateSnapshot, then Stage),
// and sn.Data must then be empty: this is how the node saves every
// snapshot, without holding one in memory. A non-empty sn.Data is instead
// written through the same steps, for callers that have the data in memory
// anyway (tests, tools).
func (s *Storage) SaveSnapshot(sn raftpb.Snapshot) error {
	m := sn.Metadata
	if m.Index == 0 {
		return fmt.Errorf("%w: snapshot at index 0", ErrInvalid)
	}
	if len(sn.Data) > 0 {
		if err := s.stageData(sn); err != nil {
			return err
		}
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.mu.Lock()
	cur, err := s.snap, s.usableLocked()
	var st *snap.Staged
	if err == nil && m.Index > cur.Index {
		st = s.staged[keyOf(m)]
		delete(s.staged, keyOf(m))
	}
	s.mu.Unlock()
	switch {
	case err != nil:
		return err
	case m.Index <= cur.Index:
		if m.Index == cur.Index && m.Term == cur.Term {
			return nil
		}
		return fmt.Errorf("%w: snapshot %s is not newer than %s", ErrSnapshotOutOfDate, snapName(m), snapName(cur))
	case st == nil:
		return fmt.Errorf("%w: snapshot %s has no data and no staged file", ErrInvalid, snapName(m))
	}
	// The file is installed without wmu so that Saves are not held up by
	// the directory's fsync; until the view below changes, nothing uses it.
	if err := st.Install(); err != nil {
		// Whether the rename reached the disk is unknown (a failed
		// directory fsync): recovery would use the file if it did, and
		// that would be right, since the snapshot is committed state. But
		// a disk that fails an fsync cannot be trusted with more writes.
		_ = st.Remove()
		return s.fail(fmt.Errorf("install snapshot %s: %w", snapName(m), err))
	}
	if err := s.baseOn(m); err != nil {
		return err
	}
	if err := s.snaps.RemoveExcept(m.Index, m.Term); err != nil {
		s.opts.Logger.Warn("storage: could not remove old snapshots", "error", err.Error())
	}
	s.mu.Lock()
	drop := s.pruneStagedLocked(snapKey{})
	s.mu.Unlock()
	s.removeStaged(drop)
	return nil
}

// stageData stages a snapshot whose data is in memory.
func (s *Storage) stageData(sn raftpb.Snapshot) error {
	w, err := s.CreateSnapshot(sn.Metadata)
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(sn.Data); err != nil {
		return err
	}
	return w.Stage()
}

// OpenSnapshot opens the file of the snapshot at index and term, normally
// the current one (Snapshot), for reading its data. The error wraps
// fs.ErrNotExist if the file is gone, replaced by a newer snapshot. The
// caller closes the reader; reading it may go on while newer snapshots
// replace the file.
func (s *Storage) OpenSnapshot(index, term uint64) (*snap.Reader, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	r, err := s.snaps.Open(index, term)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return r, nil
}

// Snapshot returns the metadata of the newest snapshot, from memory; Data
// is always nil (OpenSnapshot reads it). The raft core calls it on the
// node's loop, which must never read a whole snapshot.
func (s *Storage) Snapshot() (raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return raftpb.Snapshot{}, ErrClosed
	}
	return raftpb.Snapshot{Metadata: s.snap}, nil
}
