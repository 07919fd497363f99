package sim

import (
	"math/rand/v2"

	"github.com/raftkv/raftkv/raft"
)

// Options describe one run completely: together with the seed they decide
// everything that happens. Draw derives them from the seed alone.
type Options struct {
	// Nodes is the founding cluster's size: ids 1..Nodes, bootstrapped
	// with raft.Bootstrap.
	Nodes int
	// Joiners is how many more nodes (ids Nodes+1..Nodes+Joiners) may join
	// through membership changes; they start empty.
	Joiners int
	// ChangeEvery is the mean number of ticks between membership changes
	// (membership.go); 0: the membership never changes.
	ChangeEvery int
	// MajorityChanges lets a change remove or demote half the voters or
	// more at once ("move a majority"), and lets followers forward changes
	// that remove voters (they then apply to whatever configuration is in
	// effect when they arrive). Off, every change keeps a majority of the
	// voters it starts from as voters. Such changes are correct under
	// joint consensus, but with the core as it is they can leave the
	// cluster stuck for good: a voter that never heard that the joint
	// configuration was left stays in it and needs votes from the nodes
	// it removed, which refuse every vote, or from demoted ones, which
	// refuse a candidate whose log is shorter and never campaign.
	MajorityChanges bool
	Mix             Mix
	// Raft is every node's raft.Config; the cluster fills in ID, Storage,
	// Applied and Rand (Voters stays empty: the configuration is in the
	// log from the bootstrap on).
	Raft raft.Config
	// ChaosTicks is how long faults last before the network heals and every
	// crashed node restarts. LivenessTicks bounds, from then on, the time
	// until a proposal made after healing commits (a majority applied it);
	// CatchUpTicks bounds the time after that until every node applied it,
	// which may take a while when a follower far behind is repaired one
	// small append at a time.
	ChaosTicks, LivenessTicks, CatchUpTicks int
	// NewStateMachine makes a node's state machine, at start and after a
	// crash that lost it.
	NewStateMachine func() StateMachine
	// Clients is how many kv clients run against the cluster, their
	// history checked for linearizability (clients.go); they need
	// NewStateMachine to make KVStores. 0: none.
	Clients int
	// StaleReads breaks linearizability on purpose, to prove the history
	// check is not vacuous: clients' reads are served from the asked
	// node's store at once, without ReadIndex.
	StaleReads bool
	// EarlyWrites breaks it another way: a node answers a SET as soon as
	// it accepts the proposal, before it commits.
	EarlyWrites bool
	// TraceSteps is how many of the last steps a failure report shows.
	TraceSteps int
	// MaxSteps stops a run that never settles (a message storm, say).
	MaxSteps uint64
}

// Mix is a blend of faults and client load. Rates given as "every N" are
// means: each tick the event happens with probability 1/N.
type Mix struct {
	Name           string
	Link           LinkFaults
	Partitions     []PartitionKind // shapes to draw from; none: no partitions
	PartitionEvery int             // mean ticks between one partition healing and the next
	CrashEvery     int             // ticks between crashes; 0: never
	MaxDownTicks   int             // a crashed node restarts within this many ticks
	CrashInReady   float64         // share of crashes that strike while a Ready is half done
	PauseEvery     int             // ticks between process pauses (GC, SIGSTOP); 0: never
	CompactEvery   int             // ticks between log compactions on a random node; 0: never
	LeaderEvery    int             // ticks between forced campaigns or leadership transfers; 0: never
	ProposeEvery   int64           // time units between client proposals
	ReadEvery      int64           // time units between read-index requests; 0: never
}

var allPartitions = []PartitionKind{Symmetric, Asymmetric, OneWay}

// mixes are the fault blends Draw picks from; read-only.
var mixes = []Mix{
	{
		Name:         "calm",
		Link:         LinkFaults{MinDelay: 1, MaxDelay: 20},
		ProposeEvery: 40, ReadEvery: 200,
	},
	{
		Name:         "lossy",
		Link:         LinkFaults{DropRate: 0.15, DupRate: 0.1, LateRate: 0.03, MinDelay: 1, MaxDelay: 150},
		LeaderEvery:  40,
		PauseEvery:   30,
		ProposeEvery: 40, ReadEvery: 200,
	},
	{
		Name:       "partitions",
		Link:       LinkFaults{DropRate: 0.02, DupRate: 0.02, MinDelay: 1, MaxDelay: 60},
		Partitions: allPartitions, PartitionEvery: 15,
		CompactEvery: 25,
		ProposeEvery: 40, ReadEvery: 200,
	},
	{
		Name:       "crashes",
		Link:       LinkFaults{MinDelay: 1, MaxDelay: 60},
		CrashEvery: 12, MaxDownTicks: 40, CrashInReady: 0.5,
		CompactEvery: 25,
		ProposeEvery: 40, ReadEvery: 200,
	},
	{
		// Short partitions back to back: leaders come and go while
		// followers fall behind and catch up, the recipe for Figure 8.
		Name:       "flapping",
		Link:       LinkFaults{MinDelay: 1, MaxDelay: 100},
		Partitions: []PartitionKind{Symmetric, OneWay}, PartitionEvery: 1,
		ProposeEvery: 20, ReadEvery: 200,
	},
	{
		Name:       "chaos",
		Link:       LinkFaults{DropRate: 0.05, DupRate: 0.05, LateRate: 0.02, MinDelay: 1, MaxDelay: 100},
		Partitions: allPartitions, PartitionEvery: 20,
		CrashEvery: 20, MaxDownTicks: 40, CrashInReady: 0.5,
		CompactEvery: 30, LeaderEvery: 60, PauseEvery: 40,
		ProposeEvery: 30, ReadEvery: 150,
	},
}

// sizes are the cluster sizes Draw picks from, read-only (3 and 5 twice as often).
var sizes = []int{1, 3, 3, 5, 5, 7}

// Streams of randomness derived from one seed: the options and the run
// draw from separate streams so that changing one never shifts the other.
const (
	streamOptions = iota + 1
	streamRun
)

func seededRand(seed, stream uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, stream)) }

// Draw derives a run's options from its seed: cluster size, fault mix and
// raft configuration.
func Draw(seed uint64) Options {
	rng := seededRand(seed, streamOptions)
	o := Options{
		Nodes:           sizes[rng.IntN(len(sizes))],
		Mix:             mixes[rng.IntN(len(mixes))],
		Raft:            drawRaftConfig(rng),
		ChaosTicks:      100 + rng.IntN(300),
		NewStateMachine: NewAppliedLog,
		TraceSteps:      50,
		MaxSteps:        2_000_000,
	}
	// Two runs in three change the membership, some of them often.
	if rng.IntN(3) != 0 {
		o.Joiners = maxJoiners
		o.ChangeEvery = 5 + rng.IntN(40)
	}
	o.SetBounds()
	return o
}

// maxJoiners is how many nodes may join a run that changes its membership.
const maxJoiners = 4

// DrawKV derives a run's options like Draw, with kv stores as state
// machines and a few clients whose history is checked.
func DrawKV(seed uint64) Options {
	o := Draw(seed)
	o.NewStateMachine = NewKVStore
	o.Clients = 3 + int(seed%3)
	return o
}

// SetBounds derives LivenessTicks and CatchUpTicks from the raft timeouts:
// restarted nodes wait out an election timeout (up to 2x ElectionTicks), a
// pre-vote round may fail against followers that still heard a leader,
// split votes cost a timeout each, and the new leader's backlog must commit
// before the proposal does.
func (o *Options) SetBounds() {
	o.LivenessTicks = 30*o.Raft.ElectionTicks + 50
	o.CatchUpTicks = 10 * o.LivenessTicks
}

func drawRaftConfig(rng *rand.Rand) raft.Config {
	cfg := raft.DefaultConfig()
	cfg.ElectionTicks = 5 + rng.IntN(11)
	cfg.HeartbeatTicks = 1 + rng.IntN(min(3, cfg.ElectionTicks/3))
	cfg.PreVote = rng.IntN(4) != 0
	cfg.CheckQuorum = rng.IntN(4) != 0
	// Small limits make flow control and batching matter.
	switch rng.IntN(3) {
	case 0:
		cfg.MaxSizePerMsg = 64
		cfg.MaxInflightMsgs = 1 + rng.IntN(4)
		cfg.MaxInflightBytes = 0
		cfg.MaxCommittedSizePerReady = 64
	case 1:
		cfg.MaxSizePerMsg = 512
		cfg.MaxInflightMsgs = 2 + rng.IntN(16)
		cfg.MaxInflightBytes = 2048
		cfg.MaxCommittedSizePerReady = 1024
	}
	return cfg
}
