package raft

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// Config configures one raft core. Durations are in ticks: the runtime
// decides how long a tick is.
type Config struct {
	// ID identifies this node; it must not be 0 (raftpb.None).
	ID uint64
	// Voters is a shortcut for tests and simple setups: the initial
	// membership when Storage holds no snapshot configuration. Committed
	// conf changes in the log apply on top of it. Leave it empty when the
	// log starts with Bootstrap's entry, and for a node that will join an
	// existing cluster. If set, it must include ID.
	Voters []uint64
	// Storage is the durable log the core reads from.
	Storage Storage
	// Applied is the last index the state machine has applied (after a
	// restart); the core will not hand out entries at or below it again.
	Applied uint64

	// ElectionTicks is the base election timeout: a follower that hears
	// from no leader for a random number of ticks in
	// [ElectionTicks, 2*ElectionTicks) starts an election.
	ElectionTicks int
	// HeartbeatTicks is the leader's heartbeat interval; it must be less
	// than ElectionTicks.
	HeartbeatTicks int

	// PreVote makes a node first check, without bumping its term, that it
	// could win an election (Raft thesis §9.6).
	PreVote bool
	// CheckQuorum makes a leader step down when it has not heard from a
	// quorum within an election timeout, and makes followers that heard from
	// a live leader ignore vote requests (thesis §6.2, §4.2.3).
	CheckQuorum bool
	// ReadOnlyOption chooses how a leader confirms ReadIndex requests:
	// ReadOnlySafe (the zero value) with a heartbeat round, or
	// ReadOnlyLeaseBased from a lease, which requires CheckQuorum and
	// trusts clocks (see ReadOnlyLeaseBased).
	ReadOnlyOption ReadOnlyOption

	// MaxSizePerMsg bounds the bytes of entries in one append message.
	MaxSizePerMsg uint64
	// MaxInflightMsgs bounds the appends in flight to one follower while
	// pipelining.
	MaxInflightMsgs int
	// MaxInflightBytes bounds the bytes of entries in flight to one
	// follower; 0 means no limit beyond MaxInflightMsgs*MaxSizePerMsg.
	MaxInflightBytes uint64
	// MaxCommittedSizePerReady bounds the bytes of CommittedEntries in one
	// Ready.
	MaxCommittedSizePerReady uint64

	// Rand is the only source of randomness the core uses (election
	// timeouts). Seed it for reproducible runs.
	Rand *rand.Rand

	// Knobs deliberately break the algorithm. They exist only so the
	// simulator can prove it catches each kind of bug; never set them
	// outside tests.
	Knobs TestingKnobs
}

// ReadOnlyOption is how a leader makes sure it still leads before it
// answers a ReadIndex request.
type ReadOnlyOption uint8

const (
	// ReadOnlySafe confirms leadership with a heartbeat round that a quorum
	// acknowledges after the request arrived (Raft thesis §6.4). It relies
	// on nothing but messages: the default.
	ReadOnlySafe ReadOnlyOption = iota
	// ReadOnlyLeaseBased answers at once, without a round, while the leader
	// holds a lease: a quorum acknowledged heartbeats it created less than
	// ElectionTicks-2 of its ticks ago (thesis §6.4.1). It saves a network
	// round trip per read and keeps working while the leader's own
	// heartbeats are in flight; in exchange it trusts clocks. It requires
	// CheckQuorum and ElectionTicks >= 3.
	//
	// Why it is safe: with CheckQuorum, a voter that heard from its leader
	// refuses to help elect anyone else until ElectionTicks of its own
	// ticks have passed, and any new leader needs a vote from one of the
	// quorum that acknowledged. A voter may take its first tick right after
	// the heartbeat arrives, so no new leader exists for ElectionTicks-1
	// tick lengths after the heartbeat was received, hence after it was
	// created. The leader counts its lease from creation and ends it one
	// tick earlier still, as a margin for clocks.
	//
	// What it assumes, and what breaks it:
	//   - Bounded clock drift: ticks on every node advance at about the
	//     same rate. The margin tolerates a leader's tick lasting up to
	//     (ElectionTicks-1)/(ElectionTicks-2) times a voter's (12.5% longer
	//     with ElectionTicks 10); a leader whose clock runs slower than
	//     that, or a voter whose clock runs faster, may let a new leader
	//     commit writes while the old one still answers reads: stale reads.
	//   - No lost ticks: a leader process that pauses (GC, a stalled disk,
	//     a suspended VM) in the middle of a read, after its last Tick and
	//     before the core checks the lease, checks with a tick count that
	//     missed the pause and may serve a stale read. The runtime must
	//     catch up on the ticks a stall made it miss before it steps a read
	//     (package node does); a pause after the check is harmless, since
	//     the read index was current when it was taken.
	//   - The same option on every voter: the voters' side of the rule is
	//     part of it. A voter that restarts waits an election timeout before
	//     voting (it may have acknowledged a heartbeat just before going
	//     down), and Campaign refuses to overthrow a leader it heard from
	//     within an election timeout (ErrLeaseHeld).
	//
	// Leadership transfer ends the leader's lease for the rest of its term
	// as soon as it sends MsgTimeoutNow: the transferee's election does not
	// wait for leases. Reads then go through heartbeat rounds, as they do
	// whenever the lease has expired (a partitioned leader serves none).
	ReadOnlyLeaseBased
)

func (o ReadOnlyOption) String() string {
	switch o {
	case ReadOnlySafe:
		return "safe"
	case ReadOnlyLeaseBased:
		return "lease-based"
	}
	return fmt.Sprintf("ReadOnlyOption(%d)", uint8(o))
}

// minLeaseElectionTicks is the smallest ElectionTicks that leaves a lease of
// at least one tick (leases last ElectionTicks-2 ticks).
const minLeaseElectionTicks = 3

// TestingKnobs each disable one safety rule.
type TestingKnobs struct {
	// SkipUpToDateCheck grants votes without the §5.4.1 log comparison.
	SkipUpToDateCheck bool
	// CommitOldTermByCounting lets a leader commit an entry of an earlier
	// term once a majority stores it (the Figure 8 bug).
	CommitOldTermByCounting bool
	// ForgetVoteOnRestart drops the persisted vote when the core starts.
	ForgetVoteOnRestart bool
	// SkipConflictTruncation appends entries without removing a
	// conflicting suffix first.
	SkipConflictTruncation bool
	// SkipJointConsensus applies a change of voters in one step, straight
	// from C_old to C_new, several voters at once included: majorities of
	// the two may not overlap.
	SkipJointConsensus bool
	// AllowConcurrentConfChanges drops the pending rule: a leader proposes
	// a change while the previous one is not applied, and a change applied
	// while joint builds on the incoming configuration instead of being
	// refused, cutting the joint phase short.
	AllowConcurrentConfChanges bool
	// RemovedNodesKeepVoting lets removed nodes keep granting votes, and
	// has candidates and leaders keep asking removed voters and count their
	// votes and acknowledgements as if each stood in for a voter of the new
	// configuration.
	RemovedNodesKeepVoting bool
}

// DefaultConfig returns a Config with sensible sizes and timings for a
// 100 ms tick; the caller sets ID, Voters, Storage and Rand.
func DefaultConfig() Config {
	return Config{
		ElectionTicks:            10,
		HeartbeatTicks:           1,
		PreVote:                  true,
		CheckQuorum:              true,
		MaxSizePerMsg:            1 << 20,
		MaxInflightMsgs:          256,
		MaxInflightBytes:         32 << 20,
		MaxCommittedSizePerReady: 64 << 20,
	}
}

// Validate checks the fields against each other.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == 0 {
		errs = append(errs, errors.New("ID must not be 0"))
	}
	if c.Storage == nil {
		errs = append(errs, errors.New("Storage must be set"))
	}
	if c.Rand == nil {
		errs = append(errs, errors.New("no Rand: it must be set"))
	}
	if c.HeartbeatTicks <= 0 {
		errs = append(errs, fmt.Errorf("HeartbeatTicks must be positive, got %d", c.HeartbeatTicks))
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		errs = append(errs, fmt.Errorf("ElectionTicks (%d) must be greater than HeartbeatTicks (%d)", c.ElectionTicks, c.HeartbeatTicks))
	}
	switch c.ReadOnlyOption {
	case ReadOnlySafe:
	case ReadOnlyLeaseBased:
		if !c.CheckQuorum {
			errs = append(errs, errors.New("ReadOnlyLeaseBased requires CheckQuorum: without it followers vote a new leader in while the old one's lease still runs"))
		}
		if c.ElectionTicks < minLeaseElectionTicks {
			errs = append(errs, fmt.Errorf("ReadOnlyLeaseBased needs ElectionTicks of at least %d to leave a lease, got %d", minLeaseElectionTicks, c.ElectionTicks))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown ReadOnlyOption %v", c.ReadOnlyOption))
	}
	if c.MaxSizePerMsg == 0 {
		errs = append(errs, errors.New("MaxSizePerMsg must be positive"))
	}
	if c.MaxInflightMsgs <= 0 {
		errs = append(errs, fmt.Errorf("MaxInflightMsgs must be positive, got %d", c.MaxInflightMsgs))
	}
	if c.MaxInflightBytes != 0 && c.MaxInflightBytes < c.MaxSizePerMsg {
		errs = append(errs, fmt.Errorf("MaxInflightBytes (%d) must be 0 or at least MaxSizePerMsg (%d)", c.MaxInflightBytes, c.MaxSizePerMsg))
	}
	if c.MaxCommittedSizePerReady == 0 {
		errs = append(errs, errors.New("MaxCommittedSizePerReady must be positive"))
	}
	seen := make(map[uint64]bool, len(c.Voters))
	for _, v := range c.Voters {
		if v == 0 {
			errs = append(errs, errors.New("voter id 0 is not allowed"))
		}
		if seen[v] {
			errs = append(errs, fmt.Errorf("voter %d is listed twice", v))
		}
		seen[v] = true
	}
	if len(c.Voters) > 0 && !seen[c.ID] {
		errs = append(errs, fmt.Errorf("the voters %v must include ID %d", c.Voters, c.ID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}
	return nil
}
