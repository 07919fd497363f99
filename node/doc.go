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
// Status, Stats and StatusChanged are for monitoring: they read what the
// loop published and never wait for it. Stats include the latency of every
// WAL fsync, which the storage reports through storage.Options.OnSync.
package node
