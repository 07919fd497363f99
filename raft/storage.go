package raft

import (
	"errors"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// Errors a Storage returns. The core matches them with errors.Is.
var (
	// ErrCompacted: the requested index is older than the first retained
	// entry; the core falls back to sending a snapshot.
	ErrCompacted = errors.New("raft: requested index is compacted")
	// ErrUnavailable: the requested index is beyond the last entry.
	ErrUnavailable = errors.New("raft: requested entry is unavailable")
	// ErrSnapshotTemporarilyUnavailable: a snapshot is being made; the core
	// tries again later.
	ErrSnapshotTemporarilyUnavailable = errors.New("raft: snapshot temporarily unavailable")
)

// Storage is the core's read-only view of the durable log. The runtime
// writes to it (after persisting each Ready) and the core reads from it; the
// core never writes. Implementations must be safe for the runtime to append
// to between calls of the core, but the core itself calls them from one
// goroutine.
//
// Indexes: entries (FirstIndex-1, LastIndex] are available, and only the
// term of the entry at FirstIndex-1 is known (Term(FirstIndex-1) succeeds).
// The snapshot covers at least up to FirstIndex-1; a store may keep entries
// it covers (for lagging followers), so its index may be higher.
type Storage interface {
	// InitialState returns the persisted hard state and membership: the
	// snapshot's ConfState.
	InitialState() (raftpb.HardState, raftpb.ConfState, error)
	// Entries returns entries [lo, hi), at least one if any is in range,
	// and no more than maxSize bytes (by Entry.Size) beyond the first.
	Entries(lo, hi, maxSize uint64) ([]raftpb.Entry, error)
	// Term returns the term of entry i, for i in [FirstIndex-1, LastIndex].
	Term(i uint64) (uint64, error)
	// FirstIndex returns the index of the first entry that may be read.
	FirstIndex() (uint64, error)
	// LastIndex returns the index of the last entry.
	LastIndex() (uint64, error)
	// Snapshot returns the most recent snapshot. New reads it once (for
	// the index its ConfState belongs to) and fails on any error.
	Snapshot() (raftpb.Snapshot, error)
}
