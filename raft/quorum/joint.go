package quorum

// JointConfig is the configuration used while membership changes from
// Outgoing to Incoming (Raft thesis §4.3): every decision needs a majority of
// both. With Outgoing empty it behaves exactly like Incoming.
type JointConfig struct {
	Incoming MajorityConfig
	Outgoing MajorityConfig
}

// IDs returns every voter of either half, in increasing order, once.
func (c JointConfig) IDs() []uint64 {
	all := make(MajorityConfig, len(c.Incoming)+len(c.Outgoing))
	for id := range c.Incoming {
		all[id] = struct{}{}
	}
	for id := range c.Outgoing {
		all[id] = struct{}{}
	}
	return all.IDs()
}

// Contains reports whether id votes in either half.
func (c JointConfig) Contains(id uint64) bool {
	return c.Incoming.Contains(id) || c.Outgoing.Contains(id)
}

// CommittedIndex returns the largest index committed by both halves.
func (c JointConfig) CommittedIndex(l AckedIndexer) uint64 {
	return min(c.Incoming.CommittedIndex(l), c.Outgoing.CommittedIndex(l))
}

// VoteResult is won when both halves win and lost when either loses.
func (c JointConfig) VoteResult(votes map[uint64]bool) VoteResult {
	r1 := c.Incoming.VoteResult(votes)
	r2 := c.Outgoing.VoteResult(votes)
	if r1 == r2 {
		return r1
	}
	if r1 == VoteLost || r2 == VoteLost {
		return VoteLost
	}
	return VotePending
}
