package node

// TEMPORARY: stands in for storage.Open until package storage lands.

import (
	"fmt"
	"os"
	"sync"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

type memStore struct{ *raft.MemoryStorage }

func (m memStore) Save(hs raftpb.HardState, ents []raftpb.Entry) error {
	if err := m.Append(ents); err != nil {
		return err
	}
	if !hs.IsEmpty() {
		return m.SetHardState(hs)
	}
	return nil
}

func (m memStore) SaveSnapshot(snap raftpb.Snapshot) error {
	last, _ := m.LastIndex()
	if snap.Metadata.Index <= last {
		if t, err := m.Term(snap.Metadata.Index); err == nil && t == snap.Metadata.Term {
			_, err := m.CreateSnapshot(snap.Metadata.Index, &snap.Metadata.ConfState, snap.Data)
			return err
		}
	}
	return m.ApplySnapshot(snap)
}

func (m memStore) Close() error { return nil }

var (
	disksMu sync.Mutex
	disks   = map[string]*raft.MemoryStorage{}
)

func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	want := Membership{ClusterID: cfg.ClusterID, ID: cfg.ID, Members: cfg.Members}
	fresh, err := checkMembership(cfg.DataDir, want)
	if err != nil {
		return nil, err
	}
	disksMu.Lock()
	ms := disks[cfg.DataDir]
	if ms == nil {
		ms = raft.NewMemoryStorage()
		disks[cfg.DataDir] = ms
	}
	disksMu.Unlock()
	return start(cfg, memStore{ms}, fresh, want)
}
