// Package sim is a deterministic whole-cluster simulation of raft cores. It
// runs clusters founded with 1, 3, 5 or 7 nodes (which then grow and
// shrink) in one goroutine, breaks them in every way a real deployment can
// break, and checks Raft's safety properties after every step. Nothing in it reads a clock or starts a goroutine: one seed decides
// everything, so any run can be replayed exactly.
//
// # The model
//
// Each node is a raft.Core, a raft.MemoryStorage acting as its disk (the
// only thing that survives a crash), and a StateMachine it applies
// committed entries to (AppliedLog by default, or KVStore, the replicated
// kv.Store; a state machine that lives on disk keeps what it applied across
// a crash, otherwise it is rebuilt from the latest snapshot, and the
// simulator does both).
//
// A discrete-event scheduler drives simulated time. Every event is a step:
// a node's clock ticks (each node's clock runs at a slightly different
// rate), a message arrives, a node's runtime handles the core's Ready, a
// client proposes or asks for a read index, or the fault injector acts.
// Randomness comes from one math/rand/v2 PCG generator seeded with the
// run's seed (the options are drawn from a second stream of the same seed).
//
// Options (options.go) pick the cluster size, a fault Mix and the raft
// configuration (timeouts, PreVote, CheckQuorum, flow-control limits) from
// the seed. The network (network.go) loses, duplicates, delays and so reorders
// messages, and makes symmetric, asymmetric and one-way partitions that
// come and go. Every message goes through the real wire encoding. The
// transport's local reports reach the sender's core as MsgUnreachable and
// MsgSnapStatus.
//
// A node's runtime handles a Ready with package readydrive, the driver the
// real node runtime (package node) runs, so the order it checks is the
// order production uses: send Messages (before or after persisting, both
// are allowed), persist the snapshot, entries and hard state, send
// MessagesAfterPersist, apply, Advance. Only the side effects are
// simulated (runtime.go). Half the time the runtime goes through the
// driver's phases in one step; otherwise persisting and applying are later
// events, and the core takes ticks, messages and proposals in between, as
// its contract allows. A crash may strike just before any of the driver's
// phases from persisting on, or between any two events. The fault injector
// also pauses processes (their clock stops and messages wait for them),
// compacts logs behind snapshots (and the disk is now and then not ready to
// hand one out), and forces campaigns and leadership transfers. Half the
// faults aim at the current leader.
//
// # Membership
//
// Founders start from raft.Bootstrap, so the configuration lives in the log
// from entry 1 on; the runtime calls ApplyConfChange for each conf change
// it applies (and records the result for its snapshots) and AppliedTo once
// it applied a batch, as the node runtime does. In two runs out of three
// the fault injector also changes the membership (membership.go): a new
// node joins empty as a learner, a caught-up learner is promoted, voters
// are demoted or removed (the leader too), a node is replaced (one change
// that adds and removes: a joint configuration), and now and then a second
// change follows right behind the first (a correct leader refuses it while
// the first is pending); followers forward some changes. By default every
// change keeps a majority of the voters it starts from; Options.
// MajorityChanges also moves a majority at once and cuts the removed
// voters off the moment the change first applies, which is what exposes a
// core that skips joint consensus. Removed nodes keep running, to show that
// they keep out.
//
// After ChaosTicks the faults stop: the network heals and stops losing
// messages and crashed nodes restart. Within LivenessTicks a leader must
// commit a proposal made after healing (a majority of the voters of the
// configuration in effect applies it), and within CatchUpTicks more every
// member must have applied it.
//
// # The checks
//
// checks.go enforces, at the step where each can first break: at most one
// leader per term, ever; log matching across the nodes' durable logs;
// leader completeness (a durable log holding an entry of term T holds every
// entry committed before T); state machine safety (one entry per index
// across all nodes, each node applying each index once, in order, and only
// what is durable and committed); terms and commit indexes that never go
// back, even across a restart; a persisted vote that never changes within
// its term; read indexes that cover every commit made before the read was
// asked; the Ready contract itself (which messages may leave before
// persisting, MustSync); and membership: every node applies each conf
// change to the same configuration, a node that applies its own removal
// says so, only a voter of its configuration campaigns or leads, and a node
// that knows it was removed neither campaigns nor votes (until it is added
// back). Election safety and the committed log are checked across
// configurations: at most one leader per term whatever configuration each
// node is in, and no committed entry lost across changes. Then liveness,
// as above.
//
// # Clients and linearizability
//
// In kv mode (DrawKV, TestKV) every node runs a KVStore and a few clients
// (clients.go) work on three keys, one operation outstanding each: SET and
// CAS carry a kv.RequestID and are proposed at a random node, then retried
// unchanged at another after a simulated timeout; GET goes through
// ReadIndex at a random node and is served from its store once that has
// applied the read index. A write is answered by the node the client last
// asked, in its current incarnation, when it applies an entry carrying the
// request (a duplicate gets the remembered result). Invocations and
// responses are recorded in simulated time, writes never answered as of
// unknown outcome, and at the end porcupine checks the history against a
// register per key (within CheckTimeout; a history it cannot decide fails
// the run). Two runtimes broken on purpose (Options.StaleReads,
// Options.EarlyWrites) must be caught, which shows the check bites.
//
// # Not modeled yet
//
// Disks that lose an unsynced write (every Ready is
// persisted whole, even when MustSync is false) or tear one; the server's
// own request path (clients here play its part in-process: they see each
// node's applied results and read states directly); client sessions
// evicted from the kv session table; multi-key commands, INCR and APPEND.
//
// # Running and replaying
//
//	go test ./sim                                 # 2,000 seeds over all sizes and mixes, 1,500 kv seeds
//	go test ./sim -run 'TestKV$' -seed=12345 -v   # replay one kv seed
//	go test ./sim -run 'TestKV$' -sim.kvseeds=20000  # more kv seeds (or -sim.duration, as below)
//	go test ./sim -run TestSim -seed=12345 -v     # replay one seed, printing its trace
//	go test ./sim -run TestSim -sim.duration=10m  # soak: new seeds for ten minutes
//	go test ./sim -run TestSim -sim.seeds=20000   # more seeds
//	go test ./sim -run TestSim -sim.changeevery=3 # membership changes in every run, often
//	go test ./sim -run TestSim -sim.majoritychanges  # also move majorities at once
//
// A failure prints the broken rule, the seed, the one command that replays
// it, the state of every node and a trace of the last steps. Run, Draw and
// Options let other tests drive the simulator with their own state machine
// and fault mix.
package sim
