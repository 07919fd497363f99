package storage

import (
	"errors"

	"github.com/raftkv/raftkv/storage/internal/vfs"
	"github.com/raftkv/raftkv/storage/wal"
)

// Errors returned by this package, matched with errors.Is. Reads also return
// raft.ErrCompacted and raft.ErrUnavailable as the raft.Storage interface
// specifies.
var (
	// ErrCorrupt: data on disk fails a check (checksum, framing, a gap in
	// the log, a missing segment). The error names the file, the offset
	// and the problem. It is the same value as wal.ErrCorrupt.
	ErrCorrupt = wal.ErrCorrupt
	// ErrIdentityMismatch: the directory belongs to another node or
	// cluster.
	ErrIdentityMismatch = errors.New("storage: data directory belongs to another node or cluster")
	// ErrLocked: another Storage, probably in another process, has the
	// directory open.
	ErrLocked = vfs.ErrLocked
	// ErrClosed: the Storage was closed.
	ErrClosed = errors.New("storage: closed")
	// ErrFailed: an earlier write or fsync failed, so what is on disk is
	// unknown; the Storage refuses further writes and must be reopened.
	ErrFailed = errors.New("storage: failed earlier")
	// ErrInvalid: Save was asked to break the log's invariants: entries
	// that are not consecutive, leave a gap, overwrite committed or
	// compacted entries, or go back in term; or a hard state that lowers
	// the term, changes a vote already cast in its term, or commits past
	// the last entry.
	ErrInvalid = errors.New("storage: invalid save")
	// ErrSnapshotOutOfDate: SaveSnapshot was given a snapshot older than
	// the current one.
	ErrSnapshotOutOfDate = errors.New("storage: snapshot older than the current one")
)
