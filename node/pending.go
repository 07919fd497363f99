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
	base uint64
	seq  atomic.Uint64

	mu        sync.Mutex               // guards proposals and reads
	proposals map[uint64]chan<- any    // proposal id -> its future (buffered 1)
	reads     map[uint64]chan<- uint64 // read id -> its read index (buffered 1)
}

func newPending(base uint64) *pending {
	return &pending{
		base:      base,
		proposals: make(map[uint64]chan<- any),
		reads:     make(map[uint64]chan<- uint64),
	}
}

func (p *pending) nextID() uint64 { return p.base + p.seq.Add(1) }

// addProposal registers a future for a new proposal and returns its id, the
// proposal data prefixed with the id, and the future.
func (p *pending) addProposal(data []byte) (uint64, []byte, <-chan any) {
	id := p.nextID()
	env := make([]byte, idSize+len(data))
	binary.BigEndian.PutUint64(env, id)
	copy(env[idSize:], data)
	ch := make(chan any, 1)
	p.mu.Lock()
	p.proposals[id] = ch
	p.mu.Unlock()
	return id, env, ch
}

func (p *pending) removeProposal(id uint64) {
	p.mu.Lock()
	delete(p.proposals, id)
	p.mu.Unlock()
}

// resolveProposal hands result to the future of proposal id, if it is local
// and still waited for.
func (p *pending) resolveProposal(id uint64, result any) {
	p.mu.Lock()
	ch, ok := p.proposals[id]
	delete(p.proposals, id)
	p.mu.Unlock()
	if ok {
		ch <- result // never blocks: buffered 1, resolved once
	}
}

// addRead registers a read request and returns its id, the request context
// to hand to raft, and the channel its read index arrives on.
func (p *pending) addRead() (uint64, []byte, <-chan uint64) {
	id := p.nextID()
	rctx := binary.BigEndian.AppendUint64(nil, id)
	ch := make(chan uint64, 1)
	p.mu.Lock()
	p.reads[id] = ch
	p.mu.Unlock()
	return id, rctx, ch
}

func (p *pending) removeRead(id uint64) {
	p.mu.Lock()
	delete(p.reads, id)
	p.mu.Unlock()
}

// resolveRead hands index to the read request whose context is rctx. A
// request re-sent to raft may be answered twice; the first answer wins.
func (p *pending) resolveRead(rctx []byte, index uint64) {
	if len(rctx) != idSize {
		return
	}
	id := binary.BigEndian.Uint64(rctx)
	p.mu.Lock()
	ch, ok := p.reads[id]
	delete(p.reads, id)
	p.mu.Unlock()
	if ok {
		ch <- index
	}
}
