package raft

import "github.com/raftkv/raftkv/raft/raftpb"

// Status is a snapshot of a core's state for monitoring and tests.
type Status struct {
	ID, Term, Vote, Commit, Applied, Lead uint64
	Role                                  Role
	// Config is the configuration in effect (the last one applied).
	Config raftpb.ConfState
	// Removed: this node was a member and the configuration in effect no
	// longer lists it. It will never campaign or vote again; the runtime
	// should stop it.
	Removed bool
	// Progress is set on a leader only, keyed by peer id (self included).
	Progress map[uint64]Progress
}

// Progress is the leader's view of one peer's replication.
type Progress struct {
	// Match is the highest index known to be in the peer's log; Next the
	// next index the leader will send. Match < Next.
	Match, Next  uint64
	State        ProgressState
	RecentActive bool
	// Inflight is the number of appends sent and not yet acknowledged.
	Inflight int
}

// Status returns the core's current state. The result shares nothing with
// the core.
func (c *Core) Status() Status {
	s := Status{
		ID:      c.id,
		Term:    c.term,
		Vote:    c.vote,
		Commit:  c.log.committed,
		Applied: c.log.applied,
		Lead:    c.lead,
		Role:    c.role,
		Config:  cloneConfState(c.conf),
		Removed: c.removed,
	}
	if c.role == Leader {
		s.Progress = make(map[uint64]Progress, len(c.trk.progress))
		for id, pr := range c.trk.progress {
			s.Progress[id] = Progress{
				Match:        pr.match,
				Next:         pr.next,
				State:        pr.state,
				RecentActive: pr.recentActive,
				Inflight:     pr.inflights.count,
			}
		}
	}
	return s
}
