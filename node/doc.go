// Package node runs one raft core as a live cluster member: it owns the
// goroutines, the clock, the disk and the network around the pure core in
// package raft.
//
// Four goroutines do the work:
//
//  1. The loop owns the core. It ticks it from a time.Ticker (with
//     Config.LeaseReads, once for every tick due by the monotonic clock,
//     so that ticks missed while busy still count), steps it with
//     messages from the transport, proposals and read requests, and handles
//     each raft.Ready through package readydrive, which keeps the order the
//     Ready contract demands and which the simulator runs too: a leader's
//     appends go to the network first (they do not depend on the local disk,
//     Raft thesis §10.2.1), then the hard state and entries are written and
//     fsynced, and only then do the messages that promise something about the
//     local disk (votes, append responses) leave.
//  2. The apply goroutine applies committed entries and installed snapshots
//     to the StateMachine, strictly in log order, while the loop persists the
//     next batch. It resolves the futures of local proposals and, every
//     Config.SnapshotEntries entries, takes a view of the state machine
//     (StateMachine.Snapshot, which must be cheap).
//  3. The snapshot writer streams that view to a new snapshot file, makes it
//     durable and only then compacts the log, while applying goes on; one
//     snapshot at a time. Snapshots from a leader are streamed to disk by
//     the transport and restored by the apply goroutine from the file: no
//     goroutine holds a whole snapshot in memory.
//  4. The transport's own goroutines carry messages to and from peers; they
//     hand inbound messages to the loop through a bounded queue.
//
// A Node is safe for use by many goroutines. Stop and Close end every
// goroutine the node started before they return.
//
// Identity and membership. A data directory holds the node's identity
// (name, id, peer address, cluster id: identity.json) and its log and
// snapshots; the cluster's membership lives in the log and in snapshots,
// never in a member list that must match at every start. Founders write
// the founders' configuration as the log's first entry (raft.Bootstrap's,
// with names and addresses in its context); every later change carries the
// names and addresses of the members it adds in its own context, and a
// snapshot's node section holds the whole member directory. So a restarted
// node needs only its data directory (members.go says how changes flow
// through the runtime).
//
// A new cluster's id is random, so that a node left over from an earlier
// cluster started with the same member list is refused rather than taking
// the new nodes over with its old log. Founders started separately agree on
// it before their first election (Found): each draws a random nonce, they
// exchange nonces over the peer port until each knows all of them, and the
// id is a hash of the founders and their nonces; a founder accepts an
// already founded peer's id only if that cluster was founded with its own
// nonce. found.go gives the details and why no simpler rule is safe.
//
// Status, Stats and StatusChanged are for monitoring: they read what the
// loop published and never wait for it. Stats include the latency of every
// WAL fsync, which the storage reports through storage.Options.OnSync.
package node
