package raft

import (
	"maps"
	"slices"

	"github.com/raftkv/raftkv/raft/quorum"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// tracker holds the configuration in the shape the protocol reads it (who
// votes, who only learns) and, on a leader, every peer's progress.
type tracker struct {
	// voters is the joint configuration while joint (Outgoing is the
	// configuration being left, LearnersNext included), else Incoming alone.
	voters quorum.JointConfig
	// learners receive the log but take part in no decision.
	learners map[uint64]struct{}
	// ids lists voters, learners and ghosts in increasing order:
	// iterating over it (not over a map) keeps the core deterministic.
	ids      []uint64
	progress map[uint64]*progress
	votes    map[uint64]bool
	// ghosts are voters removed from the configuration whose votes and
	// acknowledgements still count. Only TestingKnobs.RemovedNodesKeepVoting
	// creates them: it is the bug of counting answers without checking
	// who gave them.
	ghosts []uint64
}

func newTracker() tracker {
	return tracker{
		learners: make(map[uint64]struct{}),
		progress: make(map[uint64]*progress),
		votes:    make(map[uint64]bool),
	}
}

// setConfig switches to cs (and ghosts). Progress and votes stay as they
// are: on a leader, syncProgress brings progress in line.
func (t *tracker) setConfig(cs raftpb.ConfState, ghosts []uint64) {
	t.voters = quorum.JointConfig{
		Incoming: quorum.NewMajorityConfig(cs.Voters...),
		Outgoing: quorum.NewMajorityConfig(cs.VotersOutgoing...),
	}
	t.learners = make(map[uint64]struct{}, len(cs.Learners))
	for _, id := range cs.Learners {
		t.learners[id] = struct{}{}
	}
	t.ghosts = ghosts
	all := make(map[uint64]struct{}, len(cs.Voters)+len(cs.VotersOutgoing)+len(cs.Learners)+len(ghosts))
	for _, list := range [][]uint64{cs.Voters, cs.VotersOutgoing, cs.Learners, ghosts} {
		for _, id := range list {
			all[id] = struct{}{}
		}
	}
	t.ids = slices.Sorted(maps.Keys(all))
}

// isMember reports whether id is a voter (of either half) or a learner.
func (t *tracker) isMember(id uint64) bool {
	_, learner := t.learners[id]
	return learner || t.voters.Contains(id)
}

// resetProgress starts every peer over in StateProbe at next.
func (t *tracker) resetProgress(next uint64, maxInflight int, maxInflightBytes uint64) {
	clear(t.progress)
	t.syncProgress(func() *progress {
		return &progress{next: next, inflights: newInflights(maxInflight, maxInflightBytes)}
	})
}

// syncProgress gives every peer of the configuration a progress (a fresh
// one from newPr for a peer that has none), drops the progress of peers
// that left, and marks the learners.
func (t *tracker) syncProgress(newPr func() *progress) {
	for id := range t.progress {
		if !slices.Contains(t.ids, id) {
			delete(t.progress, id)
		}
	}
	for _, id := range t.ids {
		pr, ok := t.progress[id]
		if !ok {
			pr = newPr()
			t.progress[id] = pr
		}
		_, pr.isLearner = t.learners[id]
	}
}

// AckedIndex implements quorum.AckedIndexer over the peers' match.
func (t *tracker) AckedIndex(id uint64) (uint64, bool) {
	pr, ok := t.progress[id]
	if !ok {
		return 0, false
	}
	return pr.match, true
}

// committed is the highest index a quorum of the configuration (both
// halves while joint) has acknowledged.
func (t *tracker) committed() uint64 {
	if len(t.ghosts) == 0 {
		return t.voters.CommittedIndex(t)
	}
	// Broken on purpose: each ghost's match stands in for the lowest match
	// of each half, as if it were one of its voters.
	acked := make(quorum.MapAckIndexer, len(t.progress))
	for id, pr := range t.progress {
		acked[id] = pr.match
	}
	for _, g := range t.ghosts {
		pr, ok := t.progress[g]
		if !ok {
			continue
		}
		for _, half := range [...]quorum.MajorityConfig{t.voters.Incoming, t.voters.Outgoing} {
			var low uint64
			for _, id := range half.IDs() {
				if low == raftpb.None || acked[id] < acked[low] {
					low = id
				}
			}
			if low != raftpb.None && pr.match > acked[low] {
				acked[low] = pr.match
			}
		}
	}
	return t.voters.CommittedIndex(acked)
}

func (t *tracker) recordVote(id uint64, granted bool) {
	if _, ok := t.votes[id]; !ok {
		t.votes[id] = granted
	}
}

// tallyVotes counts the votes of voters only: a learner's or a stranger's
// answer decides nothing.
func (t *tracker) tallyVotes() quorum.VoteResult {
	votes := t.votes
	if len(t.ghosts) > 0 {
		// Broken on purpose: each vote a ghost granted stands in for a
		// voter of each half that has not granted one.
		votes = maps.Clone(t.votes)
		for _, g := range t.ghosts {
			if !t.votes[g] {
				continue
			}
			for _, half := range [...]quorum.MajorityConfig{t.voters.Incoming, t.voters.Outgoing} {
				for _, id := range half.IDs() {
					if !votes[id] {
						votes[id] = true
						break
					}
				}
			}
		}
	}
	return t.voters.VoteResult(votes)
}

// electorate lists who a candidate asks for votes: the voters of both
// halves (and the ghosts, which are never voters).
func (t *tracker) electorate() []uint64 {
	ids := t.voters.IDs()
	if len(t.ghosts) > 0 {
		ids = append(ids, t.ghosts...)
		slices.Sort(ids)
	}
	return ids
}

// quorumActive reports whether a quorum of voters was recently active.
func (t *tracker) quorumActive() bool {
	active := make(map[uint64]bool, len(t.progress))
	for id, pr := range t.progress {
		if !pr.isLearner {
			active[id] = pr.recentActive
		}
	}
	return t.voters.VoteResult(active) == quorum.VoteWon
}
