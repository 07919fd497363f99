package node

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"slices"
	"strings"
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

// Member is one node of the cluster as the operator names it.
type Member struct {
	// Name is the operator's name for the node, such as "n1" or, in the
	// original command-line form, its peer address.
	Name string `json:"name"`
	// ID is the raft id, derived from Name by MemberID.
	ID uint64 `json:"id"`
	// Addr is the peer address other members dial.
	Addr string `json:"addr"`
}

// NewMember returns the member named name at peer address addr.
func NewMember(name, addr string) Member {
	return Member{Name: name, ID: MemberID(name), Addr: addr}
}

// MemberID derives a raft id from a member name (64-bit FNV-1a), so the
// same name is the same node across restarts and machines.
func MemberID(name string) uint64 { return hashID(name) }

// ClusterID derives a cluster id from the initial membership, independent of
// the order the members are listed in, so that nodes started with the same
// member list agree on it without talking and nodes of another cluster are
// refused at the handshake.
func ClusterID(members []Member) uint64 {
	lines := make([]string, len(members))
	for i, m := range members {
		lines[i] = m.Name + "=" + m.Addr
	}
	slices.Sort(lines)
	return hashID(strings.Join(lines, "\n"))
}

// hashID is the 64-bit FNV-1a hash of s, made non-zero: 0 means "none" to
// the core and on the wire. Stored and exchanged ids depend on it: never
// change it.
func hashID(s string) uint64 {
	h := fnv.New64a()
	io.WriteString(h, s)
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// Config configures a Node. ID, DataDir, Members and StateMachine are
// required; zero values elsewhere take the defaults documented per field.
type Config struct {
	// ID is this node's raft id; it must be one of Members.
	ID uint64
	// ClusterID identifies the cluster on the wire and on disk. Zero means
	// ClusterID(Members).
	ClusterID uint64
	// DataDir holds the node's log, snapshots and identity. A directory
	// written by another node or cluster is refused.
	DataDir string
	// PeerAddr is the address to listen on for peers. Empty means this
	// member's Addr.
	PeerAddr string
	// Members is the initial cluster, this node included. On a restart it
	// must equal the membership stored in DataDir (LoadMembership reads it).
	Members []Member

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
	if c.ClusterID == 0 {
		c.ClusterID = ClusterID(c.Members)
	}
	if c.PeerAddr == "" {
		if m, ok := c.member(c.ID); ok {
			c.PeerAddr = m.Addr
		}
	}
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

func (c *Config) member(id uint64) (Member, bool) {
	i := slices.IndexFunc(c.Members, func(m Member) bool { return m.ID == id })
	if i < 0 {
		return Member{}, false
	}
	return c.Members[i], true
}

// Validate checks the fields against each other.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == 0 {
		errs = append(errs, errors.New("ID must not be 0"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir must be set"))
	}
	if c.StateMachine == nil {
		errs = append(errs, errors.New("StateMachine must be set"))
	}
	if len(c.Members) == 0 {
		errs = append(errs, errors.New("no members: Members must list the whole cluster"))
	}
	ids := make(map[uint64]string, len(c.Members))
	for _, m := range c.Members {
		if m.ID == 0 || m.Name == "" || m.Addr == "" {
			errs = append(errs, fmt.Errorf("member %+v needs a name, a non-zero id and an address", m))
		}
		if other, dup := ids[m.ID]; dup {
			errs = append(errs, fmt.Errorf("members %q and %q have the same id %x", other, m.Name, m.ID))
		}
		ids[m.ID] = m.Name
	}
	if _, ok := ids[c.ID]; c.ID != 0 && !ok {
		errs = append(errs, fmt.Errorf("ID %x is not one of the members", c.ID))
	}
	if c.TickInterval < 0 {
		errs = append(errs, fmt.Errorf("TickInterval must not be negative, got %v", c.TickInterval))
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
