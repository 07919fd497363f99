package raft

import (
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// voteReply steps a vote request into c and returns its single reply.
func voteReply(t *testing.T, c *Core, st *MemoryStorage, m raftpb.Message) raftpb.Message {
	t.Helper()
	mustStep(t, c, m)
	rd := persist(t, c, st)
	if len(rd.Messages) != 0 || len(rd.MessagesAfterPersist) != 1 {
		t.Fatalf("got Messages %v and MessagesAfterPersist %v, want one reply after persisting", rd.Messages, rd.MessagesAfterPersist)
	}
	return rd.MessagesAfterPersist[0]
}

func TestVoteRequiresUpToDateLog(t *testing.T) {
	// The voter's log: terms 1, 1, 2 (last index 3, last term 2).
	for _, tc := range []struct {
		name             string
		lastIdx, lastTrm uint64
		skipCheck        bool
		grant            bool
	}{
		{"higher last term wins even if shorter", 1, 3, false, true},
		{"same term longer", 4, 2, false, true},
		{"same term same length", 3, 2, false, true},
		{"same term shorter", 2, 2, false, false},
		{"lower last term longer", 9, 1, false, false},
		{"lower last term, knob on", 9, 1, true, true},
		{"same term shorter, knob on", 2, 2, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st := coreWithLog(t, 1, []uint64{1, 2, 3}, 2, []uint64{1, 1, 2}, func(cfg *Config) {
				cfg.Knobs.SkipUpToDateCheck = tc.skipCheck
			})
			resp := voteReply(t, c, st, raftpb.Message{Type: raftpb.MsgVote, From: 2, To: 1, Term: 3, Index: tc.lastIdx, LogTerm: tc.lastTrm})
			if resp.Type != raftpb.MsgVoteResp || resp.Reject == tc.grant || resp.Term != 3 {
				t.Fatalf("got %v, want %s in term 3", resp, map[bool]string{true: "granted", false: "rejected"}[tc.grant])
			}
			wantVote := uint64(0)
			if tc.grant {
				wantVote = 2
			}
			if hs, _, _ := st.InitialState(); hs.Vote != wantVote || hs.Term != 3 {
				t.Fatalf("persisted hard state %+v, want term 3 vote %d", hs, wantVote)
			}
		})
	}
}

func TestOneVotePerTerm(t *testing.T) {
	c, st := newTestCore(t, 1, []uint64{1, 2, 3})
	req := func(from uint64) raftpb.Message {
		return raftpb.Message{Type: raftpb.MsgVote, From: from, To: 1, Term: 1}
	}
	if r := voteReply(t, c, st, req(2)); r.Reject {
		t.Fatalf("first vote rejected: %v", r)
	}
	if r := voteReply(t, c, st, req(3)); !r.Reject {
		t.Fatalf("second candidate in the same term got a vote: %v", r)
	}
	// A retransmitted request from the same candidate is granted again.
	if r := voteReply(t, c, st, req(2)); r.Reject {
		t.Fatalf("repeat request from the candidate we voted for rejected: %v", r)
	}
}

func TestVoteSurvivesRestart(t *testing.T) {
	for _, forget := range []bool{false, true} {
		c, st := newTestCore(t, 1, []uint64{1, 2, 3})
		voteReply(t, c, st, raftpb.Message{Type: raftpb.MsgVote, From: 2, To: 1, Term: 1})
		cfg := testConfig(1, []uint64{1, 2, 3}, st)
		cfg.Knobs.ForgetVoteOnRestart = forget
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := voteReply(t, c, st, raftpb.Message{Type: raftpb.MsgVote, From: 3, To: 1, Term: 1})
		if r.Reject == forget {
			t.Fatalf("ForgetVoteOnRestart=%v: second vote in term 1 after restart: %v", forget, r)
		}
	}
}

func TestPreVoteDoesNotChangeTerm(t *testing.T) {
	c, st := coreWithLog(t, 1, []uint64{1, 2, 3}, 2, []uint64{1, 2}, withPreVote)
	// A pre-vote for a later term is granted without adopting the term
	// or recording a vote.
	r := voteReply(t, c, st, raftpb.Message{Type: raftpb.MsgPreVote, From: 2, To: 1, Term: 3, Index: 2, LogTerm: 2})
	if r.Type != raftpb.MsgPreVoteResp || r.Reject || r.Term != 3 {
		t.Fatalf("got %v, want granted pre-vote in term 3", r)
	}
	if s := c.Status(); s.Term != 2 || s.Vote != 0 {
		t.Fatalf("after pre-vote: term %d vote %d, want 2 and 0", s.Term, s.Vote)
	}
	// An out-of-date pre-candidate is refused, and told our term.
	r = voteReply(t, c, st, raftpb.Message{Type: raftpb.MsgPreVote, From: 3, To: 1, Term: 3, Index: 1, LogTerm: 1})
	if !r.Reject || r.Term != 2 {
		t.Fatalf("got %v, want rejection in term 2", r)
	}
}

func TestPreCandidateThatCannotWinKeepsTerm(t *testing.T) {
	nw := newNetwork(t, 3, withPreVote)
	nw.elect(1)
	nw.isolate(3)
	for range 10 {
		nw.tick(3, 2*nw.nodes[3].cfg.ElectionTicks)
		nw.stabilize()
	}
	if s := nw.core(3).Status(); s.Term != 1 || s.Role != PreCandidate {
		t.Fatalf("isolated node: %v in term %d, want precandidate in term 1", s.Role, s.Term)
	}
	nw.heal()
	nw.tick(1, 1)
	nw.stabilize()
	if s := nw.core(1).Status(); s.Role != Leader || s.Term != 1 {
		t.Fatalf("rejoining node disrupted the leader: node 1 is %v in term %d", s.Role, s.Term)
	}
	if s := nw.core(3).Status(); s.Lead != 1 {
		t.Fatalf("rejoined node follows %d, want 1", s.Lead)
	}
}

func TestWithoutPreVoteRejoiningNodeBumpsTerm(t *testing.T) {
	// The contrast to the test above: this is the disruption PreVote avoids.
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.isolate(3)
	nw.tick(3, 2*nw.nodes[3].cfg.ElectionTicks)
	nw.stabilize()
	if s := nw.core(3).Status(); s.Term != 2 {
		t.Fatalf("isolated node in term %d, want 2", s.Term)
	}
}

func TestCheckQuorumFollowerIgnoresVotesWhileLeaderIsLive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		typ    raftpb.MessageType
		ctx    []byte
		ticks  int
		answer bool
	}{
		{"vote within lease", raftpb.MsgVote, nil, 0, false},
		{"prevote within lease", raftpb.MsgPreVote, nil, 0, false},
		{"transfer vote within lease", raftpb.MsgVote, transferCtx, 0, true},
		{"vote after lease", raftpb.MsgVote, nil, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st := newTestCore(t, 2, []uint64{1, 2, 3}, withCheckQuorum, withPreVote, func(cfg *Config) { cfg.ElectionTicks = 100 })
			mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 1})
			persist(t, c, st)
			for range tc.ticks * 10 {
				c.Tick()
			}
			_ = sent(t, c, st) // drop anything the ticks produced
			mustStep(t, c, raftpb.Message{Type: tc.typ, From: 3, To: 2, Term: 2, Index: 5, LogTerm: 1, Context: tc.ctx})
			got := ofType(sent(t, c, st), tc.typ+1) // the response type follows the request
			if (len(got) == 1) != tc.answer {
				t.Fatalf("got responses %v, want answered=%v", got, tc.answer)
			}
			if !tc.answer && c.Status().Term != 1 {
				t.Fatalf("ignored request still moved the term to %d", c.Status().Term)
			}
		})
	}
}

func TestCheckQuorumLeaderStepsDown(t *testing.T) {
	c, st := newElected(t, withCheckQuorum)
	// Node 2 answers every heartbeat; node 3 is silent. 2 + self is a quorum.
	for range 50 {
		c.Tick()
		for _, m := range ofType(sent(t, c, st), raftpb.MsgHeartbeat) {
			if m.To == 2 {
				mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1})
			}
		}
	}
	if c.Status().Role != Leader {
		t.Fatalf("leader with a live quorum stepped down")
	}
	// Now nobody answers.
	for range 20 {
		c.Tick()
	}
	if s := c.Status(); s.Role != Follower || s.Term != 1 {
		t.Fatalf("leader without a quorum is %v in term %d, want follower in term 1", s.Role, s.Term)
	}
}

func TestStaleLeaderLearnsNewTerm(t *testing.T) {
	// With CheckQuorum a follower answers an old leader's append so that
	// it steps down instead of waiting for a vote request that may never
	// reach it.
	c, st := newTestCore(t, 2, []uint64{1, 2, 3}, withCheckQuorum)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 3, To: 2, Term: 5})
	persist(t, c, st)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 4})
	resp := ofType(sent(t, c, st), raftpb.MsgAppResp)
	if len(resp) != 1 || resp[0].Term != 5 || resp[0].To != 1 {
		t.Fatalf("got %v, want one MsgAppResp in term 5 to 1", resp)
	}
	if s := c.Status(); s.Term != 5 || s.Lead != 3 {
		t.Fatalf("stale append changed state: term %d lead %d", s.Term, s.Lead)
	}
}

func TestCandidateStepsDownOnLeaderOfSameTerm(t *testing.T) {
	c, st := newTestCore(t, 1, []uint64{1, 2, 3})
	_ = c.Campaign()
	persist(t, c, st)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 1})
	if s := c.Status(); s.Role != Follower || s.Lead != 2 || s.Term != 1 {
		t.Fatalf("got %v lead %d term %d, want follower of 2 in term 1", s.Role, s.Lead, s.Term)
	}
}

func TestCandidateLosesOnMajorityRejection(t *testing.T) {
	c, _ := newTestCore(t, 1, []uint64{1, 2, 3})
	_ = c.Campaign()
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: 2, To: 1, Term: 1, Reject: true})
	if c.Status().Role != Candidate {
		t.Fatal("one rejection of three should not end the election")
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: 3, To: 1, Term: 1, Reject: true})
	if s := c.Status(); s.Role != Follower || s.Term != 1 {
		t.Fatalf("got %v in term %d, want follower in term 1", s.Role, s.Term)
	}
}

func TestElectionTimeoutIsRandomizedInRange(t *testing.T) {
	seen := map[int]bool{}
	for seed := range uint64(200) {
		c, _ := newTestCore(t, 1, []uint64{1, 2, 3}, func(cfg *Config) { cfg.Rand = newRand(seed) })
		ticks := 0
		for c.Status().Role == Follower {
			c.Tick()
			ticks++
		}
		if ticks < 10 || ticks >= 20 {
			t.Fatalf("seed %d: election after %d ticks, want [10, 20)", seed, ticks)
		}
		seen[ticks] = true
	}
	if len(seen) < 8 {
		t.Fatalf("only %d distinct timeouts over 200 seeds: not randomized", len(seen))
	}
}
