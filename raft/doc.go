// Package raft implements the Raft consensus algorithm as a deterministic
// state machine.
//
// The Core owns no goroutine, performs no I/O, reads no clock and draws
// randomness only from Config.Rand: given the same inputs it produces the
// same outputs, which is what lets the simulator replay a failing run from
// its seed. Everything with side effects — disks, sockets, timers, the
// application's state machine — belongs to the runtime that drives it.
//
// # Usage contract
//
// The runtime drives one Core from one goroutine:
//
//  1. Create the core with New(cfg). cfg.Storage holds what the node
//     persisted before. A founding member of a new cluster first persists
//     what Bootstrap(voters) returns (entry 1 adds the founders; every
//     founder writes the same). A node that will join an existing cluster
//     starts with empty storage and no cfg.Voters: it takes no part until
//     the leader adds it and it applies that change (or a snapshot listing
//     it). cfg.Applied is the last index the state machine already holds
//     after restoring its own snapshot.
//  2. Call Tick at a fixed interval: timeouts are counted in ticks
//     (Config.ElectionTicks, Config.HeartbeatTicks).
//  3. Feed it inputs: Step for every message from a peer (and the local
//     reports MsgUnreachable and MsgSnapStatus), Propose for new commands,
//     ReadIndex for linearizable reads, TransferLeadership, Campaign.
//     Step rejects malformed messages with an error and ignores stale
//     ones; neither leaves a mark on the core.
//  4. When HasReady reports true, take rd := Ready() and, in this order:
//     send rd.Messages (at any point, even before persisting); persist
//     rd.Snapshot, rd.Entries and rd.HardState to the Storage the core
//     reads (MustSync says whether an fsync is needed); only then send
//     rd.MessagesAfterPersist; apply rd.Snapshot then
//     rd.CommittedEntries to the state machine; answer the reads in
//     rd.ReadStates once rd.ReadStates[i].Index is applied. For each
//     EntryConfChange among the committed entries, decode its Data with
//     raftpb.UnmarshalConfChange (skip it if that fails) and call
//     ApplyConfChange(index, cc) when the state machine reaches it, from
//     the goroutine that drives the core; record the ConfState it returns
//     for your snapshots. Once the state machine has applied entries (or
//     the snapshot) up to some index, call AppliedTo(index), after the
//     ApplyConfChange calls for those entries. Membership changes wait for
//     AppliedTo: a leader proposes the next change, and leaves a joint
//     configuration, only once the previous change is applied.
//  5. Call Advance(rd). Inputs may keep arriving between Ready and
//     Advance, but the next Ready must wait for Advance.
//  6. Compact the Storage (behind a snapshot of the state machine) only up
//     to an applied index: the core must still read every committed entry
//     it has not handed out. The snapshot's ConfState is the one the state
//     machine recorded at that index (joint included).
//  7. To restart after a crash, go back to step 1 with the same Storage:
//     the core finds its term, vote, log and commit index there, and
//     rebuilds its configuration from the snapshot's ConfState and the
//     committed changes after it. When the state machine applies those
//     entries again, ApplyConfChange answers with what each led to and
//     changes nothing.
//  8. When Status().Removed becomes true, the node was removed from the
//     cluster: it no longer campaigns or votes. Log it and stop the node.
//
// # Membership changes
//
// ProposeConfChange proposes adding voters or learners, promoting,
// demoting or removing nodes, several at once if need be. A change takes
// effect on every node when its entry is applied (ApplyConfChange), in log
// order. Any change of the voter set goes through a joint configuration in
// which decisions need a majority of the old voters and of the new ones;
// the leader leaves it by itself once the entry that entered it is
// applied. Adding or removing learners, who receive the log but never vote
// or campaign, applies in one step. Only one change may be in flight: the
// leader refuses another with ErrConfChangePending until the state machine
// has applied the previous one. A leader that is no longer a voter once a
// change applies hands leadership to the most up-to-date voter
// (MsgTimeoutNow) and steps down. Package confchange explains why the joint
// step is needed.
//
// ReadIndex answers come in rounds: requests arriving before the next Ready
// share one heartbeat round, which confirms leadership once a quorum echoes
// it. A request that arrives after its round's heartbeats left waits for the
// next round, since acknowledgements of heartbeats sent before a request
// prove nothing about leadership at the time of the request.
//
// With Config.ReadOnlyOption set to ReadOnlyLeaseBased (which requires
// CheckQuorum) a leader skips the round while it holds a lease: a quorum
// acknowledged heartbeats it created less than ElectionTicks-2 ticks ago.
// Voters that heard from a leader refuse to elect another for ElectionTicks
// ticks, so no new leader can exist before the lease runs out — provided
// ticks advance at about the same rate on every node and the runtime does
// not lose ticks while paused. A leader still answers only once it has
// committed an entry of its term; with an expired lease, or for the rest of
// a term in which it let a transferee campaign (MsgTimeoutNow), it falls
// back to heartbeat rounds, so a partitioned leader answers nothing once a
// new leader could exist. ReadOnlyLeaseBased documents the assumptions.
//
// The ordering in step 4 is what makes the protocol safe across crashes: a
// vote or an append acknowledgement promises that the node will remember
// it, so it may only leave once the promise is on disk. A leader's own
// entries count toward the commit quorum only after the Advance of the
// Ready that carried them, and only entries of the leader's current term
// are ever committed by counting (the Raft paper's Figure 8).
//
// # Files
//
// raft.go holds the Core: term rules, elections and the per-role step and
// tick functions. log.go is the log as the core sees it (storage with
// unstable entries on top), progress.go the leader's per-follower
// replication state and inflight window, tracker.go the configuration as
// the protocol reads it (who votes, who learns) with every peer's progress,
// membership.go when changes are proposed and applied, read_only.go the
// ReadIndex protocol and read leases. Package quorum holds the majority
// arithmetic and package confchange what a change does to a configuration.
package raft
