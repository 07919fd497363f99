package raft

import "github.com/raftkv/raftkv/raft/raftpb"

// Role is the part a node plays in its current term.
type Role uint8

const (
	Follower Role = iota
	PreCandidate
	Candidate
	Leader
)

func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case PreCandidate:
		return "precandidate"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	}
	return "unknown"
}

// SoftState is volatile state worth reporting but never persisted.
type SoftState struct {
	Lead uint64
	Role Role
}

// ReadState answers a ReadIndex request: once the node has applied Index,
// a read of the state machine is linearizable. Context is the request's.
type ReadState struct {
	Index   uint64
	Context []byte
}

// Ready is a batch of work the core hands to its runtime. The runtime must,
// in this order:
//
//  1. send Messages (they may go out before or while step 2 runs: they do
//     not depend on anything this Ready persists);
//  2. durably persist Snapshot (if not empty), Entries and HardState (if not
//     empty), overwriting any existing entries from Entries[0].Index on;
//  3. only then send MessagesAfterPersist;
//  4. apply Snapshot then CommittedEntries to the state machine, in order
//     (this may happen on another goroutine, after step 2);
//  5. call Advance(rd).
type Ready struct {
	// SoftState is nil when unchanged since the previous Ready.
	*SoftState
	// HardState is empty when unchanged since the previous Ready.
	HardState raftpb.HardState
	// Entries are to be appended to stable storage.
	Entries []raftpb.Entry
	// Snapshot, when not empty, is to be persisted and applied.
	Snapshot raftpb.Snapshot
	// CommittedEntries are committed and durable locally: apply them.
	CommittedEntries []raftpb.Entry
	// Messages may be sent before this Ready is persisted (a leader's
	// appends and heartbeats: Raft thesis §10.2.1).
	Messages []raftpb.Message
	// MessagesAfterPersist must not leave the node until HardState, Entries
	// and Snapshot of this Ready are durable (votes, append responses...).
	MessagesAfterPersist []raftpb.Message
	// ReadStates answer ReadIndex requests.
	ReadStates []ReadState
	// MustSync is true when HardState or Entries must be fsynced, false when
	// only the commit index moved (which may be written lazily).
	MustSync bool
}
