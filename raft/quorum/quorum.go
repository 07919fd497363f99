// Package quorum holds the arithmetic of Raft quorums: which log index a
// configuration has committed given what each voter acknowledged, and
// whether an election is won, lost or still open.
//
// It is kept apart from the protocol so that the one place where an off-by-one
// would break safety is small enough to read in a minute and is tested against
// a naive version.
package quorum

import "math"

// AckedIndexer tells the index a voter has acknowledged. ok is false when the
// voter has acknowledged nothing; it then counts as 0.
type AckedIndexer interface {
	AckedIndex(id uint64) (idx uint64, ok bool)
}

// MapAckIndexer is an AckedIndexer backed by a map.
type MapAckIndexer map[uint64]uint64

// AckedIndex implements AckedIndexer.
func (m MapAckIndexer) AckedIndex(id uint64) (uint64, bool) {
	idx, ok := m[id]
	return idx, ok
}

// VoteResult is the state of an election (or of any yes/no poll).
type VoteResult uint8

const (
	// VotePending: neither side has a quorum yet.
	VotePending VoteResult = iota + 1
	// VoteLost: a quorum has said no, or can no longer say yes.
	VoteLost
	// VoteWon: a quorum has said yes.
	VoteWon
)

func (r VoteResult) String() string {
	switch r {
	case VotePending:
		return "pending"
	case VoteLost:
		return "lost"
	case VoteWon:
		return "won"
	}
	return "unknown"
}

// noQuorumIndex is what an empty configuration reports as committed: an
// empty half of a joint configuration must not hold the other half back.
const noQuorumIndex = math.MaxUint64
