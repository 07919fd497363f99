package node

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/transport"
)

// Stats are a node's cumulative counts since Start, for monitoring. They
// are read without waiting for the loop, so the fields of one Stats may be
// a few events apart from each other.
type Stats struct {
	// Readies is how many raft Ready batches the loop handled.
	Readies uint64
	// EntriesPersisted is how many log entries the WAL made durable.
	EntriesPersisted uint64
	// Fsyncs is how many times the WAL was synced: once per write, however
	// many entries it holds (group commit). FsyncSeconds is their total
	// duration.
	Fsyncs       uint64
	FsyncSeconds float64
	// FsyncBuckets[i] counts the fsyncs that took at most
	// FsyncBucketBounds()[i] seconds: cumulative counts, as the buckets of
	// a Prometheus histogram (Fsyncs is the +Inf bucket).
	FsyncBuckets []uint64
	// ProposalsDropped counts local proposals raft refused because no
	// leader was known or leadership was being transferred.
	ProposalsDropped uint64
	// MessagesSent counts messages handed to the transport (which drops
	// those to unreachable peers); MessagesReceived, messages from peers.
	MessagesSent, MessagesReceived uint64
	// Campaigns counts the elections this node started: the terms it
	// entered as a candidate. A pre-vote that went no further is none.
	Campaigns uint64
	// LeaderChanges counts the leaderships this node learned of: each time
	// it came to know a leader other than the last one it knew, or the
	// same one in a new term.
	LeaderChanges uint64
	// Snapshots are the snapshots of this node's state machine.
	Snapshots SnapshotStats
	// Transfers are the snapshot transfers to and from peers.
	Transfers TransferStats
}

// TransferStats count snapshot transfers to and from peers, as the
// transport keeps them.
type TransferStats = transport.SnapshotStats

// SnapshotStats count the snapshots a node took and restored.
type SnapshotStats struct {
	// Writing is true while a snapshot is being written.
	Writing bool
	// Taken counts the snapshots written and saved; Bytes is their data
	// and Seconds the time they took, from the state machine's view to
	// the durable file. Failed counts those that failed (retried later).
	Taken, Failed, Bytes uint64
	Seconds              float64
	// Restored counts the snapshots the state machine was restored from:
	// at start, or sent by a leader.
	Restored uint64
}

// fsyncBounds are the upper bounds of the fsync latency buckets, in
// seconds: from a fast NVMe flush to a disk in trouble.
var fsyncBounds = [...]float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1}

// FsyncBucketBounds returns the upper bounds, in seconds and ascending, of
// the buckets of Stats.FsyncBuckets.
func FsyncBucketBounds() []float64 { return slices.Clone(fsyncBounds[:]) }

// stats are the counters behind Stats. They are atomics because they are
// written from the loop, the apply and snapshot goroutines and the
// transport's goroutines, and read from anywhere.
type stats struct {
	readies, entriesPersisted, proposalsDropped atomic.Uint64
	messagesSent, messagesReceived              atomic.Uint64
	campaigns, leaderChanges                    atomic.Uint64

	snapshotsTaken, snapshotFailures, snapshotsRestored atomic.Uint64
	snapshotBytes, snapshotNanos                        atomic.Uint64

	fsyncNanos atomic.Uint64
	// fsyncs[i] counts fsyncs in (fsyncBounds[i-1], fsyncBounds[i]]; the
	// last slot those above every bound. Stats accumulates them.
	fsyncs [len(fsyncBounds) + 1]atomic.Uint64
}

// synced records one WAL fsync; it is storage.Options.OnSync.
func (s *stats) synced(d time.Duration, entries int) {
	// The first bound >= d, which is the bucket's "less or equal".
	i, _ := slices.BinarySearch(fsyncBounds[:], d.Seconds())
	s.fsyncs[i].Add(1)
	s.fsyncNanos.Add(uint64(max(d, 0)))
	s.entriesPersisted.Add(uint64(entries))
}

func (s *stats) snapshot() Stats {
	st := Stats{
		Readies:          s.readies.Load(),
		EntriesPersisted: s.entriesPersisted.Load(),
		FsyncSeconds:     time.Duration(s.fsyncNanos.Load()).Seconds(),
		FsyncBuckets:     make([]uint64, len(fsyncBounds)),
		ProposalsDropped: s.proposalsDropped.Load(),
		MessagesSent:     s.messagesSent.Load(),
		MessagesReceived: s.messagesReceived.Load(),
		Campaigns:        s.campaigns.Load(),
		LeaderChanges:    s.leaderChanges.Load(),
		Snapshots: SnapshotStats{
			Taken:    s.snapshotsTaken.Load(),
			Failed:   s.snapshotFailures.Load(),
			Bytes:    s.snapshotBytes.Load(),
			Seconds:  time.Duration(s.snapshotNanos.Load()).Seconds(),
			Restored: s.snapshotsRestored.Load(),
		},
	}
	// The total is the sum of the same loads, so that the buckets never
	// exceed it even while fsyncs are being recorded.
	for i := range s.fsyncs {
		st.Fsyncs += s.fsyncs[i].Load()
		if i < len(st.FsyncBuckets) {
			st.FsyncBuckets[i] = st.Fsyncs
		}
	}
	return st
}

// Stats returns the node's cumulative counts. It never blocks on the loop
// and is cheap enough to call at every metrics scrape.
func (n *Node) Stats() Stats {
	st := n.stats.snapshot()
	st.Snapshots.Writing = n.snapBusy.Load()
	st.Transfers = n.trans.SnapshotStats()
	return st
}

// StatusChanged returns a channel closed at the next change of this node's
// role, known leader or term. Call Status after StatusChanged, not before,
// so that a change in between is not missed.
func (n *Node) StatusChanged() <-chan struct{} { return n.statusChanged.C() }
