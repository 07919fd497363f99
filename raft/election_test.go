package raft

import (
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func TestElectionByTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []configOpt
	}{
		{"plain", nil},
		{"prevote", []configOpt{withPreVote}},
		{"checkquorum", []configOpt{withCheckQuorum}},
		{"prevote+checkquorum", []configOpt{withPreVote, withCheckQuorum}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := newNetwork(t, 3, tc.opts...)
			// 2*ElectionTicks ticks always exceed the randomized timeout.
			nw.tick(1, 2*nw.nodes[1].cfg.ElectionTicks)
			nw.stabilize()
			if s := nw.core(1).Status(); s.Role != Leader || s.Term != 1 {
				t.Fatalf("node 1: got %v in term %d, want leader in term 1", s.Role, s.Term)
			}
			for _, id := range []uint64{2, 3} {
				if s := nw.core(id).Status(); s.Lead != 1 || s.Vote != 1 {
					t.Errorf("node %d: got lead %d vote %d, want 1 and 1", id, s.Lead, s.Vote)
				}
			}
		})
	}
}

func TestIsolatedLeaderRejoins(t *testing.T) {
	nw := newNetwork(t, 3, withPreVote, withCheckQuorum)
	nw.elect(1)
	nw.isolate(1)
	// Node 3 must stop hearing from 1 for a full election timeout before it
	// grants a (pre-)vote: until then it trusts the leader it knows.
	nw.tick(3, nw.nodes[3].cfg.ElectionTicks-1)
	nw.tick(2, 2*nw.nodes[2].cfg.ElectionTicks)
	nw.stabilize()
	if s := nw.core(2).Status(); s.Role == Leader {
		t.Fatalf("node 2 became leader while node 3 still trusted node 1")
	}
	lead := nw.tickUntilLeader(2, 3)
	// The old leader notices it lost its quorum: the first check still
	// counts the answers it had before the partition.
	nw.tick(1, 2*nw.nodes[1].cfg.ElectionTicks)
	if s := nw.core(1).Status(); s.Role != Follower {
		t.Fatalf("old leader is %v after losing its quorum, want follower", s.Role)
	}
	nw.heal()
	nw.tick(lead, 1)
	nw.stabilize()
	if s, ls := nw.core(1).Status(), nw.core(lead).Status(); s.Lead != lead || s.Term != ls.Term {
		t.Fatalf("node 1 follows %d in term %d, want %d in term %d", s.Lead, s.Term, lead, ls.Term)
	}
}

func TestRestartKeepsTermVoteAndLog(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.propose(1, "x")
	nw.stabilize()
	before := nw.core(2).Status()
	terms := nw.logTerms(2)
	nw.restart(2)
	after := nw.core(2).Status()
	if after.Term != before.Term || after.Vote != before.Vote || after.Commit != before.Commit {
		t.Fatalf("after restart got term/vote/commit %d/%d/%d, want %d/%d/%d", after.Term, after.Vote, after.Commit, before.Term, before.Vote, before.Commit)
	}
	if got := nw.logTerms(2); len(got) != len(terms) {
		t.Fatalf("log after restart %v, want %v", got, terms)
	}
	nw.propose(1, "y")
	nw.stabilize()
	if got := nw.appliedData(2); len(got) == 0 || got[len(got)-1] != "y" {
		t.Fatalf("restarted node applied %q, want it to end with y", got)
	}
	_ = raftpb.None
}
