// Package raftpb defines the values that cross the boundary of the raft core:
// log entries, hard state, snapshots and peer messages, together with their
// compact, versioned binary encoding.
//
// The types are plain data with no behaviour beyond encoding, so that the
// core, storage and transport can share them without importing each other.
package raftpb

import (
	"fmt"
	"strconv"
	"strings"
)

// None is the node id meaning "no node": no vote cast, no leader known.
const None uint64 = 0

// EntryType says how the state machine should read an entry's Data.
type EntryType uint8

const (
	// EntryNormal carries an opaque application command (or nothing: the
	// empty entry a new leader appends to commit its term).
	EntryNormal EntryType = iota
	// EntryConfChange carries an encoded membership change.
	EntryConfChange
)

func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "normal"
	case EntryConfChange:
		return "confchange"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is one slot of the replicated log.
type Entry struct {
	Term  uint64
	Index uint64
	Type  EntryType
	Data  []byte
}

// Size is the number of bytes the entry occupies in flow-control accounting.
// It is an estimate of the encoded size, cheap to compute.
func (e *Entry) Size() uint64 { return uint64(len(e.Data)) + 24 }

// HardState is the part of a node's state that must be durable before the
// node answers any message that depends on it.
type HardState struct {
	Term   uint64 // latest term the node has seen
	Vote   uint64 // candidate voted for in Term, or None
	Commit uint64 // highest index known to be committed
}

// IsEmpty reports whether h is the zero value.
func (h HardState) IsEmpty() bool { return h == HardState{} }

// ConfState is the membership of the cluster as of some log index.
//
// Outside a joint configuration only Voters and Learners are set. While
// joint (between entering C_old,new and leaving it), Voters is the incoming
// voter set, VotersOutgoing the voters of the configuration being left, and
// LearnersNext the voters being demoted: they still vote in the outgoing
// half and become learners when the joint configuration is left. A node is
// in at most one of Voters/Learners, and LearnersNext never overlaps Voters
// or Learners.
type ConfState struct {
	Voters         []uint64
	Learners       []uint64
	VotersOutgoing []uint64
	LearnersNext   []uint64
}

// Joint reports whether cs is a joint configuration.
func (cs ConfState) Joint() bool { return len(cs.VotersOutgoing) > 0 }

// Equal reports whether c and o list the same ids in the same order.
func (c ConfState) Equal(o ConfState) bool {
	return equalIDs(c.Voters, o.Voters) && equalIDs(c.Learners, o.Learners) &&
		equalIDs(c.VotersOutgoing, o.VotersOutgoing) && equalIDs(c.LearnersNext, o.LearnersNext)
}

// String reads like "voters=(1 2 3)&&(1 2) learners=(4) learners_next=(3)",
// the outgoing half after "&&" only while joint.
func (c ConfState) String() string {
	var b strings.Builder
	b.WriteString("voters=")
	writeIDs(&b, c.Voters)
	if c.Joint() {
		b.WriteString("&&")
		writeIDs(&b, c.VotersOutgoing)
	}
	if len(c.Learners) > 0 {
		b.WriteString(" learners=")
		writeIDs(&b, c.Learners)
	}
	if len(c.LearnersNext) > 0 {
		b.WriteString(" learners_next=")
		writeIDs(&b, c.LearnersNext)
	}
	return b.String()
}

func writeIDs(b *strings.Builder, ids []uint64) {
	b.WriteByte('(')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(id, 10))
	}
	b.WriteByte(')')
}

// ConfChangeType is what one ConfChangeSingle does to one node.
type ConfChangeType uint8

const (
	// ConfChangeAddVoter adds a voter, or promotes a learner to voter.
	ConfChangeAddVoter ConfChangeType = iota + 1
	// ConfChangeAddLearner adds a learner, or demotes a voter to learner.
	ConfChangeAddLearner
	// ConfChangeRemove removes a voter or a learner.
	ConfChangeRemove
	confChangeTypeEnd // sentinel for validation; keep last
)

func (t ConfChangeType) String() string {
	switch t {
	case ConfChangeAddVoter:
		return "add-voter"
	case ConfChangeAddLearner:
		return "add-learner"
	case ConfChangeRemove:
		return "remove"
	}
	return fmt.Sprintf("ConfChangeType(%d)", uint8(t))
}

// Valid reports whether t is one of the defined change types.
func (t ConfChangeType) Valid() bool { return t > 0 && t < confChangeTypeEnd }

// ConfChangeSingle changes the membership of one node.
type ConfChangeSingle struct {
	Type   ConfChangeType
	NodeID uint64
}

func (c ConfChangeSingle) String() string { return fmt.Sprintf("%v %d", c.Type, c.NodeID) }

// ConfChange is the Data of an EntryConfChange entry (encoded with
// Marshal): a membership change the cluster agrees on through the log.
type ConfChange struct {
	// Changes take effect together. An empty list means "leave the joint
	// configuration": the leader proposes it by itself once the entry that
	// entered the joint configuration is applied.
	Changes []ConfChangeSingle
	// Context is opaque to the core. The node runtime puts the affected
	// members' names and peer addresses (and a proposal id) in it.
	Context []byte
}

// IsLeaveJoint reports whether cc is the change that leaves a joint
// configuration.
func (cc ConfChange) IsLeaveJoint() bool { return len(cc.Changes) == 0 }

func (cc ConfChange) String() string {
	if cc.IsLeaveJoint() {
		return "leave-joint"
	}
	parts := make([]string, len(cc.Changes))
	for i, ch := range cc.Changes {
		parts[i] = ch.String()
	}
	return strings.Join(parts, ", ")
}

func equalIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// SnapshotMetadata identifies the last log entry a snapshot covers and the
// membership at that point.
type SnapshotMetadata struct {
	Index     uint64
	Term      uint64
	ConfState ConfState
}

// Snapshot is a state machine image replacing the log up to Metadata.Index.
type Snapshot struct {
	Metadata SnapshotMetadata
	Data     []byte
}

// IsEmpty reports whether s holds no snapshot.
func (s Snapshot) IsEmpty() bool { return s.Metadata.Index == 0 }

// MessageType names each message the core sends or receives.
type MessageType uint8

// The fixed set of messages. Every one is handled by the core; the ones
// marked local never cross the network.
const (
	MsgApp            MessageType = iota + 1 // leader -> follower: append entries (or probe)
	MsgAppResp                               // follower -> leader: append result
	MsgVote                                  // candidate -> all: request vote
	MsgVoteResp                              // vote granted or rejected
	MsgPreVote                               // pre-candidate -> all: would you vote for me?
	MsgPreVoteResp                           // pre-vote granted or rejected
	MsgHeartbeat                             // leader -> follower: liveness and commit index
	MsgHeartbeatResp                         // follower -> leader: heartbeat acknowledged
	MsgProp                                  // follower -> leader: forwarded proposal
	MsgSnap                                  // leader -> follower: install snapshot
	MsgReadIndex                             // follower -> leader: request a read index
	MsgReadIndexResp                         // leader -> follower: the read index
	MsgTimeoutNow                            // leader -> transferee: start an election now
	MsgTransferLeader                        // any -> leader: hand leadership to Index
	MsgUnreachable                           // local: the transport could not reach From
	MsgSnapStatus                            // local: a snapshot send to From finished (Reject = failed)
	msgTypeEnd                               // sentinel for validation; keep last
)

var msgTypeNames = [...]string{
	MsgApp:            "MsgApp",
	MsgAppResp:        "MsgAppResp",
	MsgVote:           "MsgVote",
	MsgVoteResp:       "MsgVoteResp",
	MsgPreVote:        "MsgPreVote",
	MsgPreVoteResp:    "MsgPreVoteResp",
	MsgHeartbeat:      "MsgHeartbeat",
	MsgHeartbeatResp:  "MsgHeartbeatResp",
	MsgProp:           "MsgProp",
	MsgSnap:           "MsgSnap",
	MsgReadIndex:      "MsgReadIndex",
	MsgReadIndexResp:  "MsgReadIndexResp",
	MsgTimeoutNow:     "MsgTimeoutNow",
	MsgTransferLeader: "MsgTransferLeader",
	MsgUnreachable:    "MsgUnreachable",
	MsgSnapStatus:     "MsgSnapStatus",
}

func (t MessageType) String() string {
	if t > 0 && t < msgTypeEnd {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Valid reports whether t is one of the defined message types.
func (t MessageType) Valid() bool { return t > 0 && t < msgTypeEnd }

// IsLocal reports whether messages of type t are generated by the node's
// runtime for its own core and must never be sent to or accepted from a peer.
func (t MessageType) IsLocal() bool { return t == MsgUnreachable || t == MsgSnapStatus }

// IsResponse reports whether t answers a request.
func (t MessageType) IsResponse() bool {
	switch t {
	case MsgAppResp, MsgVoteResp, MsgPreVoteResp, MsgHeartbeatResp, MsgReadIndexResp:
		return true
	}
	return false
}

// Message is the unit of communication between cores. Field meaning depends
// on Type; unused fields are zero.
type Message struct {
	Type MessageType
	// From is always the node that sent the message, even when it forwards
	// a request another node made: the transport holds every message to the
	// stream it arrived on. (For the local MsgUnreachable and MsgSnapStatus
	// it is the peer concerned.)
	From uint64
	To   uint64
	Term uint64

	// LogTerm and Index: for MsgApp the term and index of the entry preceding
	// Entries; for MsgVote/MsgPreVote the candidate's last log term and index;
	// for MsgAppResp the index the follower now matches (or, when rejecting,
	// the index that was rejected); for MsgReadIndexResp the read index.
	// For MsgTransferLeader, Index is not a log index but the id of the node
	// leadership should go to (the transferee).
	LogTerm uint64
	Index   uint64

	Entries []Entry
	Commit  uint64

	// Reject, with RejectHint and HintTerm on MsgAppResp: the follower's
	// best guess of the last index that could match, and the term of its
	// entry there, so the leader can skip a whole term of conflicts at once.
	Reject     bool
	RejectHint uint64
	HintTerm   uint64

	Snapshot *Snapshot

	// Context is opaque to the core; MsgReadIndex and its response carry the
	// request id in it, heartbeats carry the read-index round.
	Context []byte
}

func (m Message) String() string {
	s := fmt.Sprintf("%v %d->%d t%d", m.Type, m.From, m.To, m.Term)
	switch m.Type {
	case MsgApp:
		s += fmt.Sprintf(" prev=%d/%d n=%d commit=%d", m.Index, m.LogTerm, len(m.Entries), m.Commit)
	case MsgAppResp:
		s += fmt.Sprintf(" index=%d", m.Index)
		if m.Reject {
			s += fmt.Sprintf(" reject hint=%d/%d", m.RejectHint, m.HintTerm)
		}
	case MsgVote, MsgPreVote:
		s += fmt.Sprintf(" last=%d/%d", m.Index, m.LogTerm)
	case MsgVoteResp, MsgPreVoteResp:
		if m.Reject {
			s += " rejected"
		} else {
			s += " granted"
		}
	case MsgHeartbeat:
		s += fmt.Sprintf(" commit=%d", m.Commit)
	case MsgProp:
		s += fmt.Sprintf(" n=%d", len(m.Entries))
	case MsgSnap:
		if m.Snapshot != nil {
			s += fmt.Sprintf(" snap=%d/%d", m.Snapshot.Metadata.Index, m.Snapshot.Metadata.Term)
		}
	case MsgReadIndexResp:
		s += fmt.Sprintf(" index=%d", m.Index)
	case MsgTransferLeader:
		s += fmt.Sprintf(" transferee=%d", m.Index)
	}
	return s
}
