package node

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/raftkv/raftkv/storage"
)

// errSnapshotOld is what the store returns for a snapshot older than the
// one it holds.
var errSnapshotOld = storage.ErrSnapshotOutOfDate

// Start opens the node's storage in cfg.DataDir (refusing a directory of
// another node or cluster), restores the state machine from the latest
// snapshot, starts listening for peers and starts the node's goroutines.
//
// A new node records its identity (cfg.Name, cfg.ClusterID and cfg.Members)
// in the directory first; a founder then writes the founders' configuration
// as the first entry of its log, while a joining node starts with an empty
// log and learns everything from the leader. A restarted node takes its
// identity from the directory and its membership from its log and
// snapshots. A node that was removed from the cluster is refused
// (ErrRemoved).
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := mkdirAll(cfg.DataDir); err != nil {
		return nil, err
	}
	id, err := openIdentity(cfg)
	if err != nil {
		return nil, err
	}
	// The counters exist before the node: storage reports its fsyncs
	// to them from the first write on.
	st := new(stats)
	store, err := storage.Open(cfg.DataDir, storage.Options{
		NodeID:      id.ID,
		ClusterID:   id.ClusterID,
		KeepEntries: uint64(cfg.CatchUpEntries),
		Logger:      cfg.Logger,
		OnSync:      st.synced,
	})
	if errors.Is(err, storage.ErrIdentityMismatch) {
		return nil, fmt.Errorf("%w: %w", ErrMembershipMismatch, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open storage: %w", err)
	}
	n, err := start(cfg, id, store, st)
	if err != nil {
		store.Close()
		return nil, err
	}
	return n, nil
}

// openIdentity returns the identity stored in cfg.DataDir, checked against
// cfg, or records a new node's.
func openIdentity(cfg Config) (Identity, error) {
	id, err := LoadIdentity(cfg.DataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return newIdentity(cfg)
	case err != nil:
		return Identity{}, err
	case cfg.Name != "" && cfg.Name != id.Name:
		return Identity{}, fmt.Errorf("%w: %s holds %s, not node %q", ErrMembershipMismatch, cfg.DataDir, id, cfg.Name)
	case id.ClusterID == 0:
		return Identity{}, fmt.Errorf("%s: %s has not agreed on a cluster id with the other founders yet (see Found)", cfg.DataDir, id)
	case cfg.ClusterID != 0 && cfg.ClusterID != id.ClusterID:
		return Identity{}, fmt.Errorf("%w: %s holds %s, not a node of cluster %016x", ErrMembershipMismatch, cfg.DataDir, id, cfg.ClusterID)
	}
	return id, nil
}

func newIdentity(cfg Config) (Identity, error) {
	if cfg.Name == "" || cfg.ClusterID == 0 || len(cfg.Members) == 0 {
		return Identity{}, fmt.Errorf("%s holds no node yet: a new node needs a name, a cluster id and members", cfg.DataDir)
	}
	if err := checkNoStorage(cfg.DataDir); err != nil {
		return Identity{}, err
	}
	self, _ := memberByName(cfg.Members, cfg.Name) // Validate checked
	id := Identity{
		Name: self.Name, ID: self.ID, Addr: self.Addr,
		ClusterID: cfg.ClusterID,
		Joined:    cfg.Join,
		Members:   sortedMembers(cfg.Members),
	}
	if err := saveIdentity(cfg.DataDir, id); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// bootstrapLog reports whether the node's log is empty (a new node), and
// then, for a founder, writes the founders' configuration as the log's
// first entry (the entry is the same every time, should a crash come
// before the write).
func bootstrapLog(id Identity, store logStore) (fresh bool, err error) {
	hs, _, err := store.InitialState()
	if err != nil {
		return false, fmt.Errorf("read initial state: %w", err)
	}
	last, err := store.LastIndex()
	if err != nil {
		return false, fmt.Errorf("read the last index: %w", err)
	}
	snap, err := store.Snapshot()
	if err != nil {
		return false, fmt.Errorf("read snapshot: %w", err)
	}
	if !hs.IsEmpty() || last > 0 || !snap.IsEmpty() {
		return false, nil
	}
	if id.Joined {
		return true, nil
	}
	bhs, ents, err := bootstrap(id.Members)
	if err != nil {
		return false, err
	}
	if err := store.Save(bhs, ents); err != nil {
		return false, fmt.Errorf("write the founders' configuration: %w", err)
	}
	return true, nil
}
