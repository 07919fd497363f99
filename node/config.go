package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// StateMachine is what the node applies committed entries to. The node calls
// all three methods from its single apply goroutine, never concurrently, so
// an implementation needs no locking for these calls (it does for its own
// readers).
type StateMachine interface {
	// Apply applies one committed command. It must be deterministic: every
	// node applies the same commands in the same order and must reach the
	// same state. Its result is handed to the proposer's future on the node
	// that proposed the command; on other nodes it is dropped.
	Apply(index uint64, data []byte) any
	// Snapshot returns an immutable view of the state as of the last
	// applied index. It must be cheap (a copy-on-write clone, say): the
	// apply goroutine waits for it. The node then writes the view to a
	// snapshot file with WriteTo, once, on a goroutine of its own, while
	// Apply and Restore go on; the view must not see their changes. An
	// error abandons this snapshot; the node tries again later.
	Snapshot() (io.WriterTo, error)
	// Restore replaces the whole state with an image a view's WriteTo
	// wrote, streamed from r.
	Restore(r io.Reader) error
}

// Config configures a Node. DataDir and StateMachine are required. A new
// node needs Name, ClusterID and Members too; a restarted node reads them
// from DataDir. Zero values elsewhere take the defaults documented per
// field.
type Config struct {
	// DataDir holds the node's identity, log and snapshots. A directory
	// written by another node or cluster is refused.
	DataDir string
	// Name is this node's member name. On a restart it may be left empty;
	// if set, it must be the one DataDir holds.
	Name string
	// ClusterID identifies the cluster on the wire and on disk. A new
	// cluster's id must be random, drawn once for the cluster and given to
	// every founder: Found has the founders agree on one (and records it,
	// with Name and Members, in DataDir, so that Start needs only DataDir
	// afterwards). On a restart it may be left 0; if set, it must be the
	// one DataDir holds.
	ClusterID uint64
	// Members are the cluster's members as a new node first knows them,
	// itself included: the founders of a new cluster, or, with Join, the
	// members that the answer to its join request listed. The membership
	// then lives in the log and snapshots; Members is ignored on a restart.
	Members []Member
	// Join: the new node joins a running cluster that has added it as a
	// member (see Node.AddJoiner), and starts with an empty log. Otherwise
	// a new node is a founder and starts the log with the founders'
	// configuration.
	Join bool
	// PeerAddr is the address to listen on for peers. Empty means this
	// member's address.
	PeerAddr string
	// ClientURL is the base URL of this node's client API, if it has one.
	// Other members ask the leader for it, so that they can send a client
	// to it when only the leader can serve a request.
	ClientURL string

	// TickInterval is the length of one raft tick. Default 100ms.
	TickInterval time.Duration
	// ElectionTicks and HeartbeatTicks are the raft timeouts in ticks.
	// Defaults 10 and 1.
	ElectionTicks, HeartbeatTicks int

	// LeaseReads makes the leader answer reads from a lease
	// (raft.ReadOnlyLeaseBased) instead of confirming its leadership with
	// a heartbeat round per batch of reads: a linearizable read on the
	// leader then costs no network round trip. It requires CheckQuorum,
	// which the node always enables, and ElectionTicks of at least 3.
	//
	// It trusts clocks: ticks must advance at about the same rate on every
	// member (raft.ReadOnlyLeaseBased gives the bound; with the default
	// ElectionTicks a leader's tick may last 12.5% longer than a
	// follower's), or a deposed leader may serve stale reads. So that a
	// loop stalled by a slow disk or a pause does not under-count time, a
	// node with LeaseReads counts its ticks by the monotonic clock and
	// catches up on missed ones before it steps a read; a machine whose
	// monotonic clock stops while it is suspended is not covered. Set it
	// alike on every member: the followers' side of the rule is part of it.
	LeaseReads bool

	// SnapshotEntries is how many applied entries trigger a snapshot of the
	// state machine and a compaction of the log. Default 10000.
	SnapshotEntries uint64
	// CatchUpEntries is how many entries below a snapshot the log keeps, so
	// a follower that lags a little catches up from the log rather than by
	// a full snapshot. Default 5000; negative means none.
	CatchUpEntries int

	// MaxProposalBytes bounds one proposal's data. The log and the peer
	// transport both refuse records above 64 MiB, so a larger entry could
	// never be stored or replicated. Default 32 MiB.
	MaxProposalBytes int
	// MaxSnapshotBytes bounds the data of a snapshot this node accepts
	// from a leader: a follower refuses a larger one (and so never catches
	// up that way), so set it well above the state's size. Default
	// transport.DefaultMaxSnapshotBytes (1 TiB).
	MaxSnapshotBytes int64

	// StateMachine receives committed commands.
	StateMachine StateMachine
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
}

// Defaults for Config fields left zero.
const (
	DefaultTickInterval     = 100 * time.Millisecond
	DefaultElectionTicks    = 10
	DefaultHeartbeatTicks   = 1
	DefaultSnapshotEntries  = 10000
	DefaultCatchUpEntries   = 5000
	DefaultMaxProposalBytes = 32 << 20
)

// minLeaseElectionTicks is the smallest election timeout that leaves a read
// lease of at least one tick (raft.ReadOnlyLeaseBased).
const minLeaseElectionTicks = 3

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = DefaultSnapshotEntries
	}
	switch {
	case c.CatchUpEntries == 0:
		c.CatchUpEntries = DefaultCatchUpEntries
	case c.CatchUpEntries < 0:
		c.CatchUpEntries = 0
	}
	if c.MaxProposalBytes == 0 {
		c.MaxProposalBytes = DefaultMaxProposalBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks the fields against each other.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir must be set"))
	}
	if c.StateMachine == nil {
		errs = append(errs, errors.New("StateMachine must be set"))
	}
	if c.Name != "" {
		if err := CheckName(c.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.Members) > 0 {
		if err := checkMembers(c.Members); err != nil {
			errs = append(errs, err)
		}
		if _, ok := memberByName(c.Members, c.Name); !ok {
			errs = append(errs, fmt.Errorf("Name %q is not one of Members", c.Name))
		}
	}
	if c.TickInterval < 0 {
		errs = append(errs, fmt.Errorf("TickInterval must not be negative, got %v", c.TickInterval))
	}
	if c.MaxSnapshotBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxSnapshotBytes must not be negative, got %d", c.MaxSnapshotBytes))
	}
	if c.MaxProposalBytes < 0 || c.MaxProposalBytes > DefaultMaxProposalBytes {
		errs = append(errs, fmt.Errorf("MaxProposalBytes must be in [0, %d], got %d", DefaultMaxProposalBytes, c.MaxProposalBytes))
	}
	if c.ElectionTicks < 0 || c.HeartbeatTicks < 0 {
		errs = append(errs, errors.New("ElectionTicks and HeartbeatTicks must not be negative"))
	}
	if c.LeaseReads && c.ElectionTicks > 0 && c.ElectionTicks < minLeaseElectionTicks {
		errs = append(errs, fmt.Errorf("LeaseReads needs ElectionTicks of at least %d to leave room for a lease, got %d", minLeaseElectionTicks, c.ElectionTicks))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node config: %w", err)
	}
	return nil
}
