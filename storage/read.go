package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/wal"
)

// The raft.Storage methods. They read the in-memory view under mu and, for
// entries older than the cache, the disk without any lock.

// InitialState returns the hard state and the membership of the snapshot.
// If the node crashed between saving a snapshot and the hard state that
// followed, the commit index is raised to the snapshot's index, which is
// committed by definition.
func (s *Storage) InitialState() (raftpb.HardState, raftpb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return raftpb.HardState{}, raftpb.ConfState{}, ErrClosed
	}
	return s.hs, s.snap.ConfState, nil
}

// FirstIndex returns the index of the first entry that can be read.
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.idx.base + 1, nil
}

// LastIndex returns the index of the last entry.
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.idx.last(), nil
}

// Term returns the term of entry i, for FirstIndex-1 <= i <= LastIndex.
func (s *Storage) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return 0, ErrClosed
	case i < s.idx.base:
		return 0, raft.ErrCompacted
	case i > s.idx.last():
		return 0, raft.ErrUnavailable
	}
	return s.idx.term(i), nil
}

// minEntrySize is the smallest Entry.Size, which bounds how many entries
// fit in a size limit.
const minEntrySize = 24

// Entries returns entries [lo, hi): at least one if lo < hi, and no more
// than maxSize bytes (by Entry.Size) beyond the first. Recent entries come
// from memory; older ones are read from disk.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, ErrClosed
	case lo <= s.idx.base:
		s.mu.Unlock()
		return nil, raft.ErrCompacted
	case hi > s.idx.last()+1:
		s.mu.Unlock()
		return nil, fmt.Errorf("entries [%d, %d) past the last entry %d: %w", lo, hi, s.idx.last(), raft.ErrUnavailable)
	case lo > hi:
		s.mu.Unlock()
		return nil, fmt.Errorf("storage: entries [%d, %d): inverted range", lo, hi)
	case lo == hi:
		s.mu.Unlock()
		return nil, nil
	}
	// No more than this many entries can be returned.
	if n := max(maxSize/minEntrySize, 1); hi-lo > n {
		hi = lo + n
	}
	var pieces []piece
	cacheFrom := max(s.cache.first(), lo)
	if len(s.cache.ents) == 0 {
		cacheFrom = hi
	}
	if lo < cacheFrom {
		pieces = s.idx.locate(lo, min(cacheFrom, hi)-lo)
	}
	var cached []raftpb.Entry
	if cacheFrom < hi {
		cached = s.cache.slice(cacheFrom, hi)
	}
	s.mu.Unlock()

	var out []raftpb.Entry
	var size uint64
	// add appends e unless that would exceed maxSize, and reports
	// whether there is room for more.
	add := func(e raftpb.Entry) bool {
		size += e.Size()
		if len(out) > 0 && size > maxSize {
			return false
		}
		out = append(out, e)
		return true
	}
	for _, p := range pieces {
		full, err := s.readPiece(p, add)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Compact deleted the segment after we looked.
				if first, ferr := s.FirstIndex(); ferr == nil && lo < first {
					return nil, raft.ErrCompacted
				}
			}
			return nil, fmt.Errorf("storage: read entries from %d: %w", p.first, err)
		}
		if full {
			return out, nil
		}
	}
	for _, e := range cached {
		if !add(e) {
			break
		}
	}
	return out, nil
}

// readPiece reads a piece's entries from disk and passes them to add until
// it says there is no more room; full reports whether that happened.
func (s *Storage) readPiece(p piece, add func(raftpb.Entry) bool) (full bool, err error) {
	next := 0 // the entry of p wanted next
	err = s.wal.ReadFrom(wal.Pos{Seq: p.seq, Off: int64(p.offs[0])}, func(pos wal.Pos, typ wal.RecordType, b []byte) (bool, error) {
		if pos.Off != int64(p.offs[next]) {
			return true, nil // a record between the piece's entries
		}
		want := p.first + uint64(next)
		if typ != recEntry {
			return false, fmt.Errorf("%v: %w: record of type %d where entry %d should be", pos, ErrCorrupt, typ, want)
		}
		e, err := raftpb.UnmarshalEntry(b)
		if err != nil {
			return false, fmt.Errorf("%v: %w: %w", pos, ErrCorrupt, err)
		}
		if e.Index != want {
			return false, fmt.Errorf("%v: %w: entry %d where entry %d should be", pos, ErrCorrupt, e.Index, want)
		}
		if !add(e) {
			full = true
			return false, nil
		}
		next++
		return next < len(p.offs), nil
	})
	if err == io.EOF {
		err = fmt.Errorf("%w: segment %d ends before entry %d", ErrCorrupt, p.seq, p.first+uint64(next))
	}
	return full, err
}
