package node

import (
	"errors"
	"fmt"
	"os"

	"github.com/raftkv/raftkv/storage"
)

// errSnapshotOld is what the store returns for a snapshot older than the
// one it holds.
var errSnapshotOld = storage.ErrSnapshotOutOfDate

// Start opens the node's storage in cfg.DataDir (refusing a directory of
// another node or cluster), restores the state machine from the latest
// snapshot, starts listening for peers and starts the node's goroutines.
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
	// The counters exist before the node: storage reports its fsyncs
	// to them from the first write on.
	st := new(stats)
	store, err := storage.Open(cfg.DataDir, storage.Options{
		NodeID:      cfg.ID,
		ClusterID:   cfg.ClusterID,
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
	n, err := start(cfg, store, st, fresh, want)
	if err != nil {
		store.Close()
		return nil, err
	}
	return n, nil
}
