package node

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// idSize is the length of the proposal id that prefixes every proposal's
// data, and of a read request's context.
const idSize = 8

// pending matches what comes back from raft (applied entries, read states)
// with the local callers waiting for it. Ids come from a random base drawn
// at start plus a counter, so ids of two runs of the node do not collide and
// an entry proposed by an earlier run or another node matches nothing here.
type pending struct {
	base      uint64
	seq       atomic.Uint64
	proposals waiters[any]    // by proposal id: the state machine's result
	reads     waiters[uint64] // by read id: the read index
}

func newPending(base uint64) *pending {
	return &pending{base: base}
}

func (p *pending) nextID() uint64 { return p.base + p.seq.Add(1) }

// addProposal registers a future for a new proposal and returns its id, the
// proposal data prefixed with the id, and the future.
func (p *pending) addProposal(data []byte) (uint64, []byte, <-chan any) {
	id := p.nextID()
	env := make([]byte, idSize+len(data))
	binary.BigEndian.PutUint64(env, id)
	copy(env[idSize:], data)
	return id, env, p.proposals.add(id)
}

// addChange registers a future for a membership change and returns its
// id, which the change's context carries, and the future.
func (p *pending) addChange() (uint64, <-chan any) {
	id := p.nextID()
	return id, p.proposals.add(id)
}

// addRead registers a read request and returns its id, the request context
// to hand to raft, and the channel its read index arrives on.
func (p *pending) addRead() (uint64, []byte, <-chan uint64) {
	id := p.nextID()
	return id, binary.BigEndian.AppendUint64(nil, id), p.reads.add(id)
}

// resolveRead hands index to the read request whose context is rctx. A
// request re-sent to raft may be answered twice; the first answer wins.
func (p *pending) resolveRead(rctx []byte, index uint64) {
	if len(rctx) == idSize {
		p.reads.resolve(binary.BigEndian.Uint64(rctx), index)
	}
}

// waiters are callers waiting for one value each, by id.
type waiters[T any] struct {
	mu sync.Mutex          // guards m
	m  map[uint64]chan<- T // each buffered 1, sent to at most once
}

func (w *waiters[T]) add(id uint64) <-chan T {
	ch := make(chan T, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[uint64]chan<- T)
	}
	w.m[id] = ch
	return ch
}

func (w *waiters[T]) remove(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, id)
}

// resolve hands v to the caller waiting for id, if one still is.
func (w *waiters[T]) resolve(id uint64, v T) {
	w.mu.Lock()
	ch, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		ch <- v // never blocks: buffered, and resolved once
	}
}
