package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// model is the simplest log that could work: a slice. It remembers every
// entry since the log was last replaced by a snapshot (not just those after
// first), because after a reopen the storage may expose compacted entries
// again when their segment was still needed for newer ones.
type model struct {
	hs             raftpb.HardState
	snap           raftpb.Snapshot
	base, baseTerm uint64         // all holds entries base+1..last
	all            []raftpb.Entry //
	first          uint64         // what FirstIndex must say
	keep           uint64
}

func newModel(keep uint64) *model { return &model{first: 1, keep: keep} }

func (m *model) last() uint64 { return m.base + uint64(len(m.all)) }

func (m *model) term(i uint64) uint64 {
	if i == m.base {
		return m.baseTerm
	}
	return m.all[i-m.base-1].Term
}

func (m *model) lastTerm() uint64 { return m.term(m.last()) }

func (m *model) clone() *model {
	c := *m
	c.all = slices.Clone(m.all)
	return &c
}

func (m *model) save(hs raftpb.HardState, es []raftpb.Entry) {
	if len(es) > 0 {
		m.all = append(m.all[:es[0].Index-m.base-1], es...)
	}
	if !hs.IsEmpty() {
		m.hs = hs
	}
}

func (m *model) saveSnapshot(sn raftpb.Snapshot) {
	i, t := sn.Metadata.Index, sn.Metadata.Term
	if i > m.last() || i < m.base || m.term(i) != t {
		m.base, m.baseTerm, m.all, m.first = i, t, nil, i+1
	}
	m.snap = sn
	m.hs.Commit = max(m.hs.Commit, i)
}

func (m *model) compact(i uint64) {
	c := min(i, m.snap.Metadata.Index)
	c -= min(c, m.keep)
	m.first = max(m.first, c+1)
}

// opKind is one thing a test does to a Storage.
type opKind int

const (
	opAppend opKind = iota
	opOverwrite
	opHardState
	opInvalid
	opLocalSnapshot
	opLeaderSnapshot
	opCompact
	opReopen
	opCrash
)

type op struct {
	kind  opKind
	hs    raftpb.HardState
	ents  []raftpb.Entry
	snap  raftpb.Snapshot
	index uint64
}

func (o op) String() string {
	switch o.kind {
	case opAppend, opOverwrite, opHardState, opInvalid:
		r := fmt.Sprintf("save hs=%+v", o.hs)
		if n := len(o.ents); n > 0 {
			r += fmt.Sprintf(" entries %d..%d (terms %d..%d)", o.ents[0].Index, o.ents[n-1].Index, o.ents[0].Term, o.ents[n-1].Term)
		}
		if o.kind == opInvalid {
			r = "invalid " + r
		}
		return r
	case opLocalSnapshot, opLeaderSnapshot:
		return fmt.Sprintf("snapshot %d/%d", o.snap.Metadata.Index, o.snap.Metadata.Term)
	case opCompact:
		return fmt.Sprintf("compact %d", o.index)
	case opReopen:
		return "reopen"
	}
	return "crash"
}

func randomEntries(rng *rand.Rand, from uint64, n int, term uint64) []raftpb.Entry {
	es := make([]raftpb.Entry, n)
	for k := range es {
		size := rng.IntN(40)
		if rng.IntN(10) == 0 {
			size = 300
		}
		var data []byte // nil when empty, as decoding gives
		for range size {
			data = append(data, byte(rng.Uint32()))
		}
		es[k] = raftpb.Entry{Index: from + uint64(k), Term: term, Type: raftpb.EntryType(rng.IntN(2)), Data: data}
	}
	return es
}

// nextOp picks a random operation valid for m (or, for opInvalid, one
// that must be refused). With restarts false it never reopens or crashes.
func nextOp(rng *rand.Rand, m *model, restarts bool) op {
	last, commit := m.last(), m.hs.Commit
	// The lowest index an overwrite may touch.
	lowest := max(commit, m.first-1) + 1
	switch r := rng.IntN(100); {
	case r < 35:
		term := max(m.lastTerm(), m.hs.Term)
		hs := m.hs
		if rng.IntN(8) == 0 {
			term++
			hs = raftpb.HardState{Term: term, Vote: rng.Uint64N(4), Commit: commit}
		}
		es := randomEntries(rng, last+1, 1+rng.IntN(4), term)
		if rng.IntN(2) == 0 {
			hs.Commit += rng.Uint64N(last + uint64(len(es)) - commit + 1)
		}
		if hs == m.hs {
			hs = raftpb.HardState{}
		}
		return op{kind: opAppend, hs: hs, ents: es}
	case r < 45 && lowest <= last:
		i := lowest + rng.Uint64N(last-lowest+1)
		term := max(m.lastTerm(), m.hs.Term) + 1
		return op{kind: opOverwrite, hs: raftpb.HardState{Term: term, Commit: commit}, ents: randomEntries(rng, i, 1+rng.IntN(3), term)}
	case r < 55:
		hs := m.hs
		hs.Commit += rng.Uint64N(last - commit + 1)
		if rng.IntN(3) == 0 {
			hs.Term, hs.Vote = hs.Term+1, rng.Uint64N(4)
		}
		return op{kind: opHardState, hs: hs}
	case r < 60:
		switch {
		case rng.IntN(2) == 0:
			return op{kind: opInvalid, ents: randomEntries(rng, last+2, 1, m.lastTerm())}
		case commit >= m.first:
			return op{kind: opInvalid, ents: randomEntries(rng, commit, 1, max(m.lastTerm(), m.hs.Term)+1)}
		case m.hs.Vote != 0:
			return op{kind: opInvalid, hs: raftpb.HardState{Term: m.hs.Term, Vote: m.hs.Vote + 1, Commit: commit}}
		}
		return op{kind: opInvalid, ents: randomEntries(rng, last+1, 1, m.lastTerm()), hs: raftpb.HardState{Term: m.hs.Term, Vote: m.hs.Vote, Commit: last + 5}}
	case r < 70 && commit > m.snap.Metadata.Index:
		i := m.snap.Metadata.Index + 1 + rng.Uint64N(commit-m.snap.Metadata.Index)
		return op{kind: opLocalSnapshot, snap: snapshotAt(i, m.term(i), fmt.Sprint("local state at ", i))}
	case r < 75:
		i := commit + 1 + rng.Uint64N(last-commit+4)
		term := max(m.lastTerm(), m.hs.Term)
		if i <= last {
			term = m.term(i) + 1 + rng.Uint64N(2)
		}
		return op{kind: opLeaderSnapshot, snap: snapshotAt(i, term, fmt.Sprint("leader state at ", i))}
	case r < 88:
		return op{kind: opCompact, index: rng.Uint64N(last + 3)}
	case r < 94 && restarts:
		return op{kind: opReopen}
	case restarts:
		return op{kind: opCrash}
	}
	return op{kind: opCompact, index: rng.Uint64N(last + 3)}
}

// apply performs o on s and, if it is valid, on m.
func (o op) apply(s *Storage, m *model) error {
	switch o.kind {
	case opAppend, opOverwrite, opHardState:
		if err := s.Save(o.hs, o.ents); err != nil {
			return err
		}
		m.save(o.hs, o.ents)
	case opInvalid:
		if err := s.Save(o.hs, o.ents); !errors.Is(err, ErrInvalid) {
			return fmt.Errorf("invalid save: got %v, want ErrInvalid", err)
		}
	case opLocalSnapshot, opLeaderSnapshot:
		if err := s.SaveSnapshot(o.snap); err != nil {
			return err
		}
		m.saveSnapshot(o.snap)
	case opCompact:
		if err := s.Compact(o.index); err != nil {
			return err
		}
		m.compact(o.index)
	}
	return nil
}

// adoptFirst accepts the first index a reopened s reports if it is one
// recovery may produce: entries compacted in memory come back when their
// segment was still needed, and the entry after an unknown-term base may
// become the base; but everything after the snapshot is always there.
func (m *model) adoptFirst(s *Storage) error {
	first, err := s.FirstIndex()
	if err != nil {
		return err
	}
	highest := m.first + 1
	if m.snap.IsEmpty() {
		highest = 1
	} else {
		highest = min(highest, m.snap.Metadata.Index+1)
	}
	if first <= m.base || first > highest {
		return fmt.Errorf("reopened with first index %d, want in [%d, %d]", first, m.base+1, highest)
	}
	m.first = first
	return nil
}

// check compares every read of s with m.
func (m *model) check(s *Storage, rng *rand.Rand) error {
	first, err1 := s.FirstIndex()
	last, err2 := s.LastIndex()
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if first != m.first || last != m.last() {
		return fmt.Errorf("first %d last %d, want %d and %d", first, last, m.first, m.last())
	}
	hs, cs, err := s.InitialState()
	if err != nil || hs != m.hs || !cs.Equal(m.snap.Metadata.ConfState) {
		return fmt.Errorf("InitialState %+v %+v %v, want %+v %+v", hs, cs, err, m.hs, m.snap.Metadata.ConfState)
	}
	for i := first - 1; i <= last; i++ {
		if got, err := s.Term(i); err != nil || got != m.term(i) {
			return fmt.Errorf("Term(%d) = %d, %v; want %d", i, got, err, m.term(i))
		}
	}
	if first >= 2 {
		if _, err := s.Term(first - 2); !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("Term(%d) before the log: got %v, want ErrCompacted", first-2, err)
		}
	}
	if _, err := s.Term(last + 1); !errors.Is(err, raft.ErrUnavailable) {
		return fmt.Errorf("Term(%d) after the log: got %v, want ErrUnavailable", last+1, err)
	}
	for range 4 {
		lo := first + rng.Uint64N(last-first+2)
		hi := lo + rng.Uint64N(last-lo+2)
		maxSize := rng.Uint64N(400)
		if rng.IntN(3) == 0 {
			lo, hi, maxSize = first, last+1, ^uint64(0)
		}
		got, err := s.Entries(lo, hi, maxSize)
		if err != nil {
			return fmt.Errorf("Entries(%d, %d, %d): %v", lo, hi, maxSize, err)
		}
		if want := m.entries(lo, hi, maxSize); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("Entries(%d, %d, %d):\n got %v\nwant %v", lo, hi, maxSize, got, want)
		}
	}
	sn, err := loadSnapshot(s)
	if err != nil || !reflect.DeepEqual(sn, m.snap) {
		return fmt.Errorf("Snapshot() = %+v, %v; want %+v", sn, err, m.snap)
	}
	return nil
}

func (m *model) entries(lo, hi, maxSize uint64) []raftpb.Entry {
	var out []raftpb.Entry
	var size uint64
	for i := lo; i < hi; i++ {
		e := m.all[i-m.base-1]
		size += e.Size()
		if len(out) > 0 && size > maxSize {
			break
		}
		out = append(out, e)
	}
	return out
}
