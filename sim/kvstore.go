package sim

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// KVStore runs the replicated key-value store as a node's state machine,
// as the server does: every committed entry goes to kv.Store.Apply (entries
// that are not commands only advance its applied index), and snapshots are
// the store's own stream.
type KVStore struct {
	Store *kv.Store
	// Last is the result of the last applied entry: the node that
	// proposed a write learns its outcome here, in-process.
	Last kv.Result
}

var _ StateMachine = (*KVStore)(nil)

// NewKVStore returns an empty KVStore; it suits Options.NewStateMachine.
func NewKVStore() StateMachine { return &KVStore{Store: kv.New()} }

// Apply applies e to the store. Bytes that are not a command (the
// simulator's background load) are the store's business: it answers them
// with an error and moves on, as it would in production. Only an index
// the store already applied is the runtime's fault.
func (s *KVStore) Apply(e raftpb.Entry) error {
	data := e.Data
	if e.Type != raftpb.EntryNormal {
		data = nil
	}
	s.Last = s.Store.Apply(e.Index, data)
	if errors.Is(s.Last.Err, kv.ErrStaleIndex) {
		return fmt.Errorf("kv store: applying %d/%d: %w", e.Index, e.Term, s.Last.Err)
	}
	return nil
}

// Snapshot streams the store into a byte slice.
func (s *KVStore) Snapshot() ([]byte, error) {
	var b bytes.Buffer
	if err := s.Store.Snapshot(&b); err != nil {
		return nil, fmt.Errorf("kv store: snapshot: %w", err)
	}
	return b.Bytes(), nil
}

// Restore replaces the store with a snapshot's state.
func (s *KVStore) Restore(data []byte) error {
	if err := s.Store.Restore(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("kv store: restore: %w", err)
	}
	s.Last = kv.Result{}
	return nil
}
