package quorum

import (
	"fmt"
	"slices"
)

// MajorityConfig is a set of voters; a quorum is any strict majority of them.
type MajorityConfig map[uint64]struct{}

// NewMajorityConfig returns the configuration of the given voters.
func NewMajorityConfig(ids ...uint64) MajorityConfig {
	c := make(MajorityConfig, len(ids))
	for _, id := range ids {
		c[id] = struct{}{}
	}
	return c
}

// IDs returns the voters in increasing order.
func (c MajorityConfig) IDs() []uint64 {
	ids := make([]uint64, 0, len(c))
	for id := range c {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Contains reports whether id is one of the voters.
func (c MajorityConfig) Contains(id uint64) bool {
	_, ok := c[id]
	return ok
}

func (c MajorityConfig) String() string { return fmt.Sprint(c.IDs()) }

// CommittedIndex returns the largest index that a majority of the voters has
// acknowledged: with the acked indexes sorted from highest to lowest, the
// (n/2+1)-th one. An empty configuration returns math.MaxUint64 so that it
// does not constrain a joint configuration.
func (c MajorityConfig) CommittedIndex(l AckedIndexer) uint64 {
	n := len(c)
	if n == 0 {
		return noQuorumIndex
	}
	// Clusters are small; keep the common case off the heap since the
	// leader calls this for every acknowledgement.
	var buf [7]uint64
	var acked []uint64
	if n <= len(buf) {
		acked = buf[:0]
	} else {
		acked = make([]uint64, 0, n)
	}
	for id := range c {
		idx, _ := l.AckedIndex(id)
		acked = append(acked, idx)
	}
	// Insertion sort, descending: n is tiny and slices.Sort would escape buf.
	for i := 1; i < len(acked); i++ {
		for j := i; j > 0 && acked[j] > acked[j-1]; j-- {
			acked[j], acked[j-1] = acked[j-1], acked[j]
		}
	}
	return acked[n/2]
}

// VoteResult tallies votes (true = granted, false = rejected, missing = not
// yet answered). An empty configuration wins, so that it does not constrain a
// joint configuration.
func (c MajorityConfig) VoteResult(votes map[uint64]bool) VoteResult {
	if len(c) == 0 {
		return VoteWon
	}
	granted, missing := 0, 0
	for id := range c {
		v, ok := votes[id]
		switch {
		case !ok:
			missing++
		case v:
			granted++
		}
	}
	q := len(c)/2 + 1
	if granted >= q {
		return VoteWon
	}
	if granted+missing >= q {
		return VotePending
	}
	return VoteLost
}
