package raft

import (
	"errors"
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// ErrSnapOutOfDate: the snapshot is older than the one the storage has.
var ErrSnapOutOfDate = errors.New("raft: snapshot is older than the existing one")

// MemoryStorage is a Storage kept in memory, for tests and the simulator.
// Its write methods play the runtime's part: call them with what a Ready
// asks to persist. It is not safe for concurrent use (the core may not
// import sync): callers that share it between goroutines must lock around
// it.
type MemoryStorage struct {
	hardState raftpb.HardState
	confState raftpb.ConfState
	snapshot  raftpb.Snapshot
	// ents[0] stands for the last entry the snapshot covers: only its
	// index and term are meaningful. Invariant: len(ents) >= 1 and
	// ents[i].Index == ents[0].Index+i.
	ents []raftpb.Entry
}

var _ Storage = (*MemoryStorage)(nil)

// NewMemoryStorage returns an empty storage.
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{ents: make([]raftpb.Entry, 1)}
}

// InitialState implements Storage.
func (s *MemoryStorage) InitialState() (raftpb.HardState, raftpb.ConfState, error) {
	return s.hardState, s.confState, nil
}

// SetHardState records the hard state.
func (s *MemoryStorage) SetHardState(h raftpb.HardState) error {
	s.hardState = h
	return nil
}

// SetConfState records the membership, as a brand-new cluster's bootstrap
// would.
func (s *MemoryStorage) SetConfState(cs raftpb.ConfState) {
	s.confState = cloneConfState(cs)
}

func cloneConfState(cs raftpb.ConfState) raftpb.ConfState {
	return raftpb.ConfState{
		Voters:         slices.Clone(cs.Voters),
		Learners:       slices.Clone(cs.Learners),
		VotersOutgoing: slices.Clone(cs.VotersOutgoing),
		LearnersNext:   slices.Clone(cs.LearnersNext),
	}
}

func (s *MemoryStorage) offset() uint64 { return s.ents[0].Index }

func (s *MemoryStorage) lastIndex() uint64 { return s.offset() + uint64(len(s.ents)) - 1 }

// Entries implements Storage.
func (s *MemoryStorage) Entries(lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	if lo <= s.offset() {
		return nil, ErrCompacted
	}
	if hi > s.lastIndex()+1 {
		return nil, fmt.Errorf("entries [%d, %d) past last index %d: %w", lo, hi, s.lastIndex(), ErrUnavailable)
	}
	if lo >= hi {
		return nil, nil
	}
	ents := s.ents[lo-s.offset() : hi-s.offset()]
	// Cap the slice so that a caller appending to it copies instead of
	// writing over our later entries.
	return limitSize(ents[:len(ents):len(ents)], maxSize), nil
}

// Term implements Storage.
func (s *MemoryStorage) Term(i uint64) (uint64, error) {
	if i < s.offset() {
		return 0, ErrCompacted
	}
	if i > s.lastIndex() {
		return 0, ErrUnavailable
	}
	return s.ents[i-s.offset()].Term, nil
}

// FirstIndex implements Storage.
func (s *MemoryStorage) FirstIndex() (uint64, error) { return s.offset() + 1, nil }

// LastIndex implements Storage.
func (s *MemoryStorage) LastIndex() (uint64, error) { return s.lastIndex(), nil }

// Snapshot implements Storage.
func (s *MemoryStorage) Snapshot() (raftpb.Snapshot, error) { return s.snapshot, nil }

// ApplySnapshot replaces the storage's contents with snap.
func (s *MemoryStorage) ApplySnapshot(snap raftpb.Snapshot) error {
	if snap.Metadata.Index <= s.snapshot.Metadata.Index {
		return ErrSnapOutOfDate
	}
	snap.Metadata.ConfState = cloneConfState(snap.Metadata.ConfState)
	s.snapshot = snap
	s.confState = cloneConfState(snap.Metadata.ConfState)
	s.ents = []raftpb.Entry{{Term: snap.Metadata.Term, Index: snap.Metadata.Index}}
	return nil
}

// CreateSnapshot records a snapshot of the state machine as of index i
// (which must be stored) with membership cs (nil: unchanged) and data.
// Compact afterwards to drop the entries it covers.
func (s *MemoryStorage) CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (raftpb.Snapshot, error) {
	if i <= s.snapshot.Metadata.Index {
		return raftpb.Snapshot{}, ErrSnapOutOfDate
	}
	if i > s.lastIndex() {
		return raftpb.Snapshot{}, fmt.Errorf("snapshot at %d past last index %d: %w", i, s.lastIndex(), ErrUnavailable)
	}
	if i < s.offset() {
		return raftpb.Snapshot{}, ErrCompacted
	}
	if cs != nil {
		s.confState = cloneConfState(*cs)
	}
	s.snapshot = raftpb.Snapshot{
		Metadata: raftpb.SnapshotMetadata{Index: i, Term: s.ents[i-s.offset()].Term, ConfState: cloneConfState(s.confState)},
		Data:     data,
	}
	return s.snapshot, nil
}

// Compact drops the entries before i; entry i's term stays known.
func (s *MemoryStorage) Compact(i uint64) error {
	if i <= s.offset() {
		return ErrCompacted
	}
	if i > s.lastIndex() {
		return fmt.Errorf("compact to %d past last index %d: %w", i, s.lastIndex(), ErrUnavailable)
	}
	n := i - s.offset()
	ents := make([]raftpb.Entry, 1, uint64(len(s.ents))-n)
	ents[0] = raftpb.Entry{Index: s.ents[n].Index, Term: s.ents[n].Term}
	s.ents = append(ents, s.ents[n+1:]...)
	return nil
}

// Append stores ents, first removing any stored entries from ents[0].Index
// on (a conflicting suffix). Entries already compacted are skipped. ents
// must continue the stored log without a gap.
func (s *MemoryStorage) Append(ents []raftpb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	first := s.offset() + 1
	last := ents[len(ents)-1].Index
	if last < first {
		return nil // all compacted
	}
	if ents[0].Index < first {
		ents = ents[first-ents[0].Index:]
	}
	if ents[0].Index > s.lastIndex()+1 {
		return fmt.Errorf("append entries %d-%d: gap after last index %d", ents[0].Index, last, s.lastIndex())
	}
	keep := ents[0].Index - s.offset()
	// Truncate with a fresh array when entries are dropped: slices handed
	// out by Entries may still be read.
	if keep < uint64(len(s.ents)) {
		s.ents = append(slices.Clone(s.ents[:keep]), ents...)
		return nil
	}
	s.ents = append(s.ents, ents...)
	return nil
}
