package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
	"github.com/raftkv/raftkv/storage/snap"
	"github.com/raftkv/raftkv/storage/wal"
)

// Record types in the WAL.
const (
	recEntry     wal.RecordType = 1
	recHardState wal.RecordType = 2
	recBase      wal.RecordType = 3
	recReset     wal.RecordType = 4
)

// lockFile keeps two processes from opening one directory.
const lockFile = "LOCK"

// Defaults for zero Options fields.
const (
	DefaultSegmentSize = 64 << 20
	DefaultCacheBytes  = 16 << 20
	// maxSegmentBytes keeps record offsets within the uint32 the index
	// stores them in.
	maxSegmentBytes = 1<<32 - 1
)

// Options configure a Storage.
type Options struct {
	// NodeID and ClusterID are recorded when the directory is created;
	// opening it later with different ones fails with
	// ErrIdentityMismatch. NodeID must not be 0.
	NodeID, ClusterID uint64
	// SegmentSize is the size at which a new WAL segment is started
	// (default 64 MiB, at most 1 GiB). A segment exceeds it by at most one
	// batch.
	SegmentSize int64
	// KeepEntries is how many entries Compact keeps behind the snapshot,
	// so followers slightly behind can catch up without a snapshot.
	KeepEntries uint64
	// CacheBytes bounds the newest entries kept in memory (by
	// Entry.Size; default 16 MiB); older entries are read from disk.
	CacheBytes int64
	// Logger receives warnings, such as a torn tail cut off; nil discards.
	Logger *slog.Logger
	// NoSync skips every fsync: only for tests and benchmarks, since a
	// crash then loses acknowledged writes.
	NoSync bool
	// OnSync, if set, is called after each write to the WAL is synced,
	// with the time the fsync took and how many log entries the write
	// made durable (one write serves a whole group commit). It lets the
	// caller keep fsync statistics. It runs while the WAL is locked, so it
	// must be quick and must not call the Storage.
	OnSync func(d time.Duration, entries int)

	// fs replaces the operating system's file system in tests.
	fs vfs.FS
}

func (o *Options) validate() error {
	var errs []error
	if o.NodeID == 0 {
		errs = append(errs, errors.New("NodeID must not be 0"))
	}
	if o.SegmentSize < 0 || o.SegmentSize > 1<<30 {
		errs = append(errs, fmt.Errorf("SegmentSize must be in [0, 1 GiB], got %d", o.SegmentSize))
	}
	if o.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("CacheBytes must not be negative, got %d", o.CacheBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage options: %w", err)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.fs == nil {
		o.fs = vfs.OS{}
	}
	return nil
}

// Storage is a node's durable log and snapshot. It implements raft.Storage
// for the core, and Save, SaveSnapshot and Compact for the runtime. It is
// safe for concurrent use.
type Storage struct {
	opts  Options
	dir   string
	lock  io.Closer // held from Open to Close
	snaps *snap.Dir

	// wmu is held by whoever writes to the WAL: a group-commit leader,
	// SaveSnapshot while it records a reset, Compact, Close. It is the
	// only lock held across I/O, and readers never take it. The in-memory
	// view below changes only while both wmu and mu are held, so a holder
	// of wmu may read it without mu.
	wmu   sync.Mutex
	wal   *wal.WAL
	batch wal.Batch
	buf   []byte // scratch for encoding one record

	// snapMu serializes SaveSnapshot calls, which install snapshot files
	// without holding wmu.
	snapMu sync.Mutex

	// mu guards the fields below. It is held only briefly, never across I/O.
	mu      sync.Mutex
	pending []*saveReq // Saves waiting for a group-commit leader
	hs      raftpb.HardState
	snap    raftpb.SnapshotMetadata  // the newest snapshot, whose file is on disk
	staged  map[snapKey]*snap.Staged // finished snapshot files SaveSnapshot may adopt
	idx     index
	cache   cache
	closed  bool
	failed  error // first write failure; see ErrFailed
}

var _ raft.Storage = (*Storage)(nil)

// Open opens the data directory dir, creating it if it is empty, and
// recovers the log as the package comment describes. Only one Storage may
// have a directory open at a time (ErrLocked).
func Open(dir string, opts Options) (*Storage, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	fsys := opts.fs
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", dir, err)
	}
	lock, err := fsys.Lock(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("storage: lock %s: %w", filepath.Join(dir, lockFile), err)
	}
	s := &Storage{opts: opts, dir: dir, lock: lock, staged: make(map[snapKey]*snap.Staged)}
	s.cache.max = uint64(opts.CacheBytes)
	if err := s.open(); err != nil {
		if s.wal != nil {
			_ = s.wal.Close()
		}
		_ = lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *Storage) open() error {
	fsys, opts := s.opts.fs, s.opts
	walDir := filepath.Join(s.dir, "wal")
	fresh, err := isFresh(fsys, walDir)
	if err != nil {
		return err
	}
	if err := checkIdentity(fsys, s.dir, opts.NodeID, opts.ClusterID, fresh, !opts.NoSync); err != nil {
		return err
	}
	s.snaps, err = snap.Open(filepath.Join(s.dir, "snap"), snap.Options{FS: fsys, Logger: opts.Logger, NoSync: opts.NoSync})
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	snapMeta, haveSnap, err := s.snaps.Newest()
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	var r replay
	s.wal, err = wal.Open(walDir, wal.Options{FS: fsys, Logger: opts.Logger, NoSync: opts.NoSync}, func(pos wal.Pos, typ wal.RecordType, p []byte) error {
		return r.record(s, pos, typ, p)
	})
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if err := s.recover(&r, snapMeta, haveSnap); err != nil {
		return err
	}
	if haveSnap {
		if err := s.snaps.RemoveExcept(snapMeta.Index, snapMeta.Term); err != nil {
			opts.Logger.Warn("storage: could not remove old snapshots", "error", err.Error())
		}
	}
	return nil
}

// isFresh reports whether the WAL directory holds no segment yet. It
// creates nothing: wal.Open does.
func isFresh(fsys vfs.FS, walDir string) (bool, error) {
	names, err := fsys.List(walDir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: list %s: %w", walDir, err)
	}
	for _, n := range names {
		if filepath.Ext(n) == ".wal" {
			return false, nil
		}
	}
	return true, nil
}

// Close releases the files. Saves waiting in line fail with ErrClosed;
// everything acknowledged is already durable. Calling Close twice is safe.
func (s *Storage) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cache.clear()
	s.mu.Unlock()
	err := s.wal.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// usableLocked returns why the Storage cannot be used, if it cannot.
func (s *Storage) usableLocked() error {
	if s.closed {
		return ErrClosed
	}
	if s.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, s.failed)
	}
	return nil
}

func (s *Storage) usable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usableLocked()
}
