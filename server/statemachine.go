package server

import (
	"context"
	"io"
	"sync"
	"sync/atomic"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
)

// StateMachine adapts a kv.Store to node.StateMachine: the node hands it
// every committed command and it returns the command's kv.Result, which
// Node.Propose passes back to the proposer. It also lets the server wait
// until a given index is applied (for /readyz) and counts applies.
//
// Apply, Snapshot and Restore are called by the node's apply goroutine;
// the other methods are safe from any goroutine.
type StateMachine struct {
	store   *kv.Store
	applies atomic.Uint64 // commands applied, for metrics

	applied atomic.Uint64 // mirrors store.AppliedIndex without its lock
	nwait   atomic.Int32  // len(waiters), so Apply skips the mutex when nobody waits
	mu      sync.Mutex    // guards waiters
	waiters []appliedWaiter
}

// appliedWaiter is closed once the applied index reaches index.
type appliedWaiter struct {
	index uint64
	ch    chan struct{}
}

var _ node.StateMachine = (*StateMachine)(nil)

// NewStateMachine returns the adapter for store. Pass it to node.Config as
// the StateMachine and to server.Config, so that both see the same store.
func NewStateMachine(store *kv.Store) *StateMachine {
	m := &StateMachine{store: store}
	m.applied.Store(store.AppliedIndex())
	return m
}

// Store returns the adapted store.
func (m *StateMachine) Store() *kv.Store { return m.store }

// Apply applies one committed command and returns its kv.Result.
func (m *StateMachine) Apply(index uint64, data []byte) any {
	res := m.store.Apply(index, data)
	m.applies.Add(1)
	// Every other result means the store's applied index is now index:
	// no need to take the store's lock again to read it back.
	if res.Err != kv.ErrStaleIndex {
		m.advance(index)
	}
	return res
}

// Snapshot freezes the store's state in O(1): the returned kv.Checkpoint
// is a copy-on-write view that the node writes out while Apply goes on.
func (m *StateMachine) Snapshot() (io.WriterTo, error) { return m.store.Checkpoint(), nil }

// Restore replaces the store's state with a snapshot.
func (m *StateMachine) Restore(r io.Reader) error {
	if err := m.store.Restore(r); err != nil {
		return err
	}
	m.advance(m.store.AppliedIndex())
	return nil
}

// advance publishes the applied index and wakes the waiters it satisfies.
func (m *StateMachine) advance(index uint64) {
	m.applied.Store(index)
	if m.nwait.Load() == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := m.waiters[:0]
	for _, w := range m.waiters {
		if w.index <= index {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	clear(m.waiters[len(kept):])
	m.waiters = kept
	m.nwait.Store(int32(len(kept)))
}

// waitApplied returns once the store has applied index, or ctx's error.
func (m *StateMachine) waitApplied(ctx context.Context, index uint64) error {
	if m.applied.Load() >= index {
		return nil
	}
	w := appliedWaiter{index: index, ch: make(chan struct{})}
	m.mu.Lock()
	m.waiters = append(m.waiters, w)
	m.nwait.Store(int32(len(m.waiters)))
	m.mu.Unlock()
	// Checked again after registering: an advance in between saw no waiter.
	if m.applied.Load() >= index {
		m.drop(w)
		return nil
	}
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		m.drop(w)
		return ctx.Err()
	}
}

func (m *StateMachine) drop(w appliedWaiter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.waiters {
		if x.ch == w.ch {
			m.waiters = append(m.waiters[:i], m.waiters[i+1:]...)
			m.nwait.Store(int32(len(m.waiters)))
			return
		}
	}
}
