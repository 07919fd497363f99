package raft

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// Membership changes, told as the Raft thesis tells them (chapter 4): new
// servers first join as learners and catch up (§4.2.1), any change of
// voters goes through a joint configuration (§4.3), a removed leader steps
// down (§4.2.2) and removed servers stop disrupting (§4.2.3).

func addVoter(id uint64) raftpb.ConfChangeSingle {
	return raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddVoter, NodeID: id}
}

func addLearner(id uint64) raftpb.ConfChangeSingle {
	return raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddLearner, NodeID: id}
}

func removeNode(id uint64) raftpb.ConfChangeSingle {
	return raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemove, NodeID: id}
}

func confChange(chs ...raftpb.ConfChangeSingle) raftpb.ConfChange {
	return raftpb.ConfChange{Changes: chs}
}

func conf(voters, learners, outgoing, learnersNext []uint64) raftpb.ConfState {
	return raftpb.ConfState{Voters: voters, Learners: learners, VotersOutgoing: outgoing, LearnersNext: learnersNext}
}

func nodes(ids ...uint64) []uint64 { return ids }

// newBootstrappedNetwork starts n founders with ids 1..n, each with the
// log Bootstrap gives (and no Config.Voters), as the runtime starts them.
func newBootstrappedNetwork(t testing.TB, n int, opts ...configOpt) *network {
	t.Helper()
	nw := &network{t: t, nodes: map[uint64]*testNode{}, cut: map[[2]uint64]bool{}}
	for i := range n {
		nw.ids = append(nw.ids, uint64(i+1))
	}
	for _, id := range nw.ids {
		hs, ents := Bootstrap(nw.ids)
		st := NewMemoryStorage()
		if err := st.Append(ents); err != nil {
			t.Fatal(err)
		}
		_ = st.SetHardState(hs)
		cfg := testConfig(id, nil, st)
		for _, o := range opts {
			o(&cfg)
		}
		nw.start(id, cfg, st)
	}
	nw.stabilize() // every founder applies entry 1
	return nw
}

// join starts node id with empty storage and no configuration: a new node
// waiting to be added.
func (nw *network) join(id uint64, opts ...configOpt) {
	nw.t.Helper()
	st := NewMemoryStorage()
	cfg := testConfig(id, nil, st)
	for _, o := range opts {
		o(&cfg)
	}
	nw.start(id, cfg, st)
	nw.ids = append(nw.ids, id)
}

// change proposes cc on node id and lets the network settle.
func (nw *network) change(id uint64, chs ...raftpb.ConfChangeSingle) {
	nw.t.Helper()
	if err := nw.core(id).ProposeConfChange(confChange(chs...)); err != nil {
		nw.t.Fatalf("propose %v on %d: %v", confChange(chs...), id, err)
	}
	nw.stabilize()
}

// checkConf fails unless every listed node's core has want in effect.
func (nw *network) checkConf(want raftpb.ConfState, ids ...uint64) {
	nw.t.Helper()
	for _, id := range ids {
		if got := nw.core(id).ConfState(); !got.Equal(want) {
			nw.t.Fatalf("node %d has configuration %v, want %v", id, got, want)
		}
	}
}

// leaders lists the nodes that think they lead.
func (nw *network) leaders() []uint64 {
	var out []uint64
	for _, id := range nw.ids {
		if nw.core(id).Status().Role == Leader {
			out = append(out, id)
		}
	}
	return out
}

func TestBootstrapIsIdenticalOnEveryFounder(t *testing.T) {
	hs1, ents1 := Bootstrap(nodes(3, 1, 2))
	hs2, ents2 := Bootstrap(nodes(1, 2, 3))
	if hs1 != hs2 || !reflect.DeepEqual(ents1, ents2) {
		t.Fatalf("founders listing voters in different orders disagree: %v %v vs %v %v", hs1, ents1, hs2, ents2)
	}
	if hs1 != (raftpb.HardState{Term: 1, Commit: 1}) || len(ents1) != 1 || ents1[0].Index != 1 || ents1[0].Term != 1 || ents1[0].Type != raftpb.EntryConfChange {
		t.Fatalf("Bootstrap = %v %v, want entry 1/1 committed", hs1, ents1)
	}
	cc, err := raftpb.UnmarshalConfChange(ents1[0].Data)
	if err != nil || !reflect.DeepEqual(cc, confChange(addVoter(1), addVoter(2), addVoter(3))) {
		t.Fatalf("entry 1 holds %v, %v; want the three voters added", cc, err)
	}

	nw := newBootstrappedNetwork(t, 3)
	nw.checkConf(conf(nodes(1, 2, 3), nil, nil, nil), 1, 2, 3)
	nw.elect(2)
	nw.propose(2, "a")
	nw.stabilize()
	for _, id := range nw.ids {
		if got := nw.appliedData(id); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("node %d applied %q, want [a]", id, got)
		}
	}
}

// §4.2.1: a new server joins without a vote, catches up, and only then is
// promoted, so that adding it costs the cluster no availability.
func TestAddLearnerThenPromote(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	nw.propose(1, "a")
	nw.stabilize()

	nw.join(4)
	if s := nw.core(4).Status(); len(s.Config.Voters) != 0 || s.Removed {
		t.Fatalf("a joining node starts with %v, removed %v; want no configuration, not removed", s.Config, s.Removed)
	}
	if err := nw.core(4).Campaign(); !errors.Is(err, ErrNotVoter) {
		t.Fatalf("joining node campaigns: %v", err)
	}

	nw.change(1, addLearner(4))
	// A learner-only change applies in one step: no joint configuration.
	learnerConf := conf(nodes(1, 2, 3), nodes(4), nil, nil)
	nw.checkConf(learnerConf, 1, 2, 3, 4)
	for _, id := range nw.ids {
		if got := nw.nodes[id].confs; got[len(got)-1].Joint() || !got[len(got)-1].Equal(learnerConf) {
			t.Fatalf("node %d recorded %v", id, got)
		}
	}
	// The learner caught up from entry 1, where it learned the founders'
	// configuration (without itself: a joiner, not a removed node), and
	// applies what the others do.
	if got := nw.nodes[4].confs; len(got) != 2 || !got[0].Equal(conf(nodes(1, 2, 3), nil, nil, nil)) {
		t.Fatalf("the joiner recorded %v, want the founders' configuration then its own addition", got)
	}
	if got := nw.appliedData(4); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("learner applied %q, want [a]", got)
	}
	// It never campaigns, however long it hears nothing.
	term := nw.core(4).Status().Term
	nw.isolate(4)
	nw.tick(4, 100)
	if s := nw.core(4).Status(); s.Role != Follower || s.Term != term {
		t.Fatalf("isolated learner is %v in term %d, want follower in %d", s.Role, s.Term, term)
	}
	nw.heal()
	// Its acknowledgement does not count toward commit.
	nw.isolate(2)
	nw.cut[[2]uint64{1, 3}], nw.cut[[2]uint64{3, 1}] = true, true
	nw.propose(1, "b")
	nw.stabilize()
	if s := nw.core(1).Status(); s.Commit == s.Progress[1].Match || s.Progress[4].Match != s.Progress[1].Match {
		t.Fatalf("leader commit %d with progress %v: want the learner to have the entry and it uncommitted", s.Commit, s.Progress)
	}
	nw.heal()
	nw.tick(1, 1)
	nw.stabilize()

	nw.change(1, addVoter(4))
	full := conf(nodes(1, 2, 3, 4), nil, nil, nil)
	nw.checkConf(full, 1, 2, 3, 4)
	// Promotion changes the voters: it went through C_old,new, left by
	// the leader on its own.
	want := []raftpb.ConfState{conf(nodes(1, 2, 3, 4), nil, nodes(1, 2, 3), nil), full}
	if got := nw.nodes[4].confs[len(nw.nodes[4].confs)-2:]; !reflect.DeepEqual(got, want) {
		t.Fatalf("the promoted node went through %v, want %v", got, want)
	}
	if err := nw.core(4).Campaign(); err != nil {
		t.Fatalf("promoted node cannot campaign: %v", err)
	}
}

// §4.3: replacing a voter enters C_old,new, in which decisions need both
// majorities, and the leader leaves it for C_new once it is applied.
func TestReplaceVoterThroughJointConsensus(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	nw.join(4)
	nw.change(1, addLearner(4))
	nw.change(1, addVoter(4), removeNode(3))

	joint := conf(nodes(1, 2, 4), nil, nodes(1, 2, 3), nil)
	final := conf(nodes(1, 2, 4), nil, nil, nil)
	for _, id := range nodes(1, 2, 4) {
		confs := nw.nodes[id].confs
		if got := confs[len(confs)-2:]; !reflect.DeepEqual(got, []raftpb.ConfState{joint, final}) {
			t.Fatalf("node %d went through %v, want %v then %v", id, got, joint, final)
		}
	}
	// The removed node applied the joint entry; whether it sees the
	// leave entry is up to timing: it stops being replicated to.
	if s := nw.core(3).Status(); !s.Config.Equal(joint) && !s.Config.Equal(final) {
		t.Fatalf("node 3 has %v", s.Config)
	}
	nw.propose(1, "after")
	nw.stabilize()
	for _, id := range nodes(1, 2, 4) {
		if got := nw.appliedData(id); !slices.Equal(got, []string{"after"}) {
			t.Fatalf("node %d applied %q", id, got)
		}
	}
	// The leader stopped replicating to node 3 once it left C_old,new.
	if _, ok := nw.core(1).Status().Progress[3]; ok {
		t.Fatal("leader still tracks the removed node 3")
	}
}

// §4.2.2: a leader removed from the configuration manages the cluster
// while joint, then steps down; here it hands over at once with
// MsgTimeoutNow, so no election timeout passes.
func TestRemoveLeaderHandsOff(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	term := nw.core(1).Status().Term
	nw.propose(1, "a")
	nw.stabilize()
	nw.trace = nil

	nw.change(1, removeNode(1)) // no tick from here on

	if s := nw.core(1).Status(); s.Role != Follower || !s.Removed {
		t.Fatalf("removed leader is %v, removed %v; want a removed follower", s.Role, s.Removed)
	}
	var timeoutNows []raftpb.Message
	for _, m := range nw.trace {
		if m.Type == raftpb.MsgTimeoutNow {
			timeoutNows = append(timeoutNows, m)
		}
	}
	if len(timeoutNows) != 1 || timeoutNows[0].From != 1 {
		t.Fatalf("MsgTimeoutNow sent: %v, want one from the removed leader", timeoutNows)
	}
	leaders := nw.leaders()
	if len(leaders) != 1 || leaders[0] != timeoutNows[0].To {
		t.Fatalf("leaders %v, want node %d, which got MsgTimeoutNow", leaders, timeoutNows[0].To)
	}
	if got := nw.core(leaders[0]).Status().Term; got != term+1 {
		t.Fatalf("new leader in term %d, want %d", got, term+1)
	}
	nw.checkConf(conf(nodes(2, 3), nil, nil, nil), 2, 3)
	nw.propose(leaders[0], "b")
	nw.stabilize()
	for _, id := range nodes(2, 3) {
		if got := nw.appliedData(id); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("node %d applied %q", id, got)
		}
	}
}

// §4.2.3: a removed server must not disrupt the cluster: it never
// campaigns and grants no vote.
func TestRemovedFollowerStopsTakingPart(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	// Node 3 gets the entries but none of the appends that only carry the
	// commit index: it learns that C_new committed only from the last
	// heartbeat the leader sends a peer it drops.
	nw.mangle = func(m raftpb.Message) (raftpb.Message, bool) {
		return m, !(m.Type == raftpb.MsgApp && m.To == 3 && len(m.Entries) == 0)
	}
	nw.change(1, removeNode(3))
	nw.checkConf(conf(nodes(1, 2), nil, nil, nil), 1, 2)

	c3 := nw.core(3)
	if s := c3.Status(); !s.Removed || s.Role != Follower {
		t.Fatalf("node 3 is %v with %v, removed %v; want a removed follower", s.Role, s.Config, s.Removed)
	}
	if err := c3.Campaign(); !errors.Is(err, ErrNotVoter) {
		t.Fatalf("removed node campaigns: %v", err)
	}
	term := c3.Status().Term
	nw.isolate(3)
	nw.tick(3, 100)
	if s := c3.Status(); s.Role != Follower || s.Term != term {
		t.Fatalf("removed node is %v in term %d after ticking, want follower in %d", s.Role, s.Term, term)
	}
}

func TestRemovedNodeRefusesVotes(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	nw.change(1, removeNode(3))
	c3 := nw.core(3)
	if !c3.Status().Removed {
		t.Fatal("node 3 does not know it was removed")
	}
	term := c3.Status().Term
	for _, typ := range []raftpb.MessageType{raftpb.MsgPreVote, raftpb.MsgVote} {
		mustStep(t, c3, raftpb.Message{Type: typ, From: 2, To: 3, Term: term + 5, Index: 100, LogTerm: term + 4})
		resp := sent(t, c3, nw.nodes[3].storage)
		if len(resp) != 1 || !resp[0].Reject {
			t.Fatalf("removed node answered %v with %v, want a rejection", typ, resp)
		}
	}
}

// The pending rule: a leader proposes a change only once the state machine
// has applied the previous one, and a new leader only once it has applied
// its whole log, which may hide a change it does not know is pending.
func TestConfChangePendingUntilApplied(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	leader := nw.nodes[1]
	leader.holdApply = true
	nw.elect(1)
	c := nw.core(1)
	if s := c.Status(); s.Commit != s.Applied {
		t.Fatalf("setup: commit %d, handed out %d", s.Commit, s.Applied)
	}
	// Advance has run, but the state machine has not applied the entry of
	// the new term.
	if err := c.ProposeConfChange(confChange(addLearner(4))); !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("new leader with its log unapplied: got %v, want ErrConfChangePending", err)
	}
	leader.holdApply = false
	nw.apply(1)
	if err := c.ProposeConfChange(confChange(addLearner(4))); err != nil {
		t.Fatalf("once applied: %v", err)
	}
	if err := c.ProposeConfChange(confChange(addLearner(5))); !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("second change right away: got %v, want ErrConfChangePending", err)
	}
	leader.holdApply = true
	nw.stabilize()
	if err := c.ProposeConfChange(confChange(addLearner(5))); !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("second change once the first is committed but not applied: got %v, want ErrConfChangePending", err)
	}
	// A follower's forwarded change is dropped silently meanwhile.
	last := c.Status().Commit
	if err := nw.core(2).ProposeConfChange(confChange(addLearner(6))); err != nil {
		t.Fatalf("follower forwarding: %v", err)
	}
	nw.stabilize()
	if got := c.Status().Commit; got != last {
		t.Fatalf("the leader appended a forwarded change while one was pending: commit %d -> %d", last, got)
	}
	leader.holdApply = false
	nw.apply(1)
	nw.change(1, addLearner(5))
	nw.checkConf(conf(nodes(1, 2, 3), nodes(4, 5), nil, nil), 1, 2, 3)
}

func TestInvalidConfChangesRefused(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	nw.change(1, addLearner(4))
	for _, tc := range []struct {
		name string
		cc   raftpb.ConfChange
	}{
		{"add an existing voter", confChange(addVoter(2))},
		{"add an existing learner", confChange(addLearner(4))},
		{"remove a non-member", confChange(removeNode(9))},
		{"node id 0", confChange(addLearner(0))},
		{"learner and voter at once", confChange(addVoter(5), addLearner(5))},
		{"remove every voter", confChange(removeNode(1), removeNode(2), removeNode(3))},
		{"leave when not joint", raftpb.ConfChange{}},
		{"unknown change type", confChange(raftpb.ConfChangeSingle{Type: 7, NodeID: 5})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := nw.core(1).Status()
			if err := nw.core(1).ProposeConfChange(tc.cc); !errors.Is(err, ErrInvalidConfChange) {
				t.Fatalf("leader: got %v, want ErrInvalidConfChange", err)
			}
			// Forwarded by a follower: dropped by the leader.
			if err := nw.core(2).ProposeConfChange(tc.cc); err != nil {
				t.Fatalf("follower forwarding: %v", err)
			}
			nw.stabilize()
			if after := nw.core(1).Status(); after.Commit != before.Commit || !after.Config.Equal(before.Config) {
				t.Fatalf("refused change left a mark: %+v -> %+v", before, after)
			}
		})
	}
}

// A change that a buggy or hostile leader got committed is refused by every
// node the same way when applied, leaving the configuration alone.
func TestApplyRefusesInvalidCommittedChange(t *testing.T) {
	c, st := newTestCore(t, 2, nodes(1, 2, 3))
	bad := confChange(removeNode(9))
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 1, Commit: 1,
		Entries: []raftpb.Entry{{Term: 1, Index: 1, Type: raftpb.EntryConfChange, Data: bad.Marshal()}}})
	rd := c.Ready()
	save(t, st, rd)
	if len(rd.CommittedEntries) != 1 {
		t.Fatalf("committed %v, want entry 1", rd.CommittedEntries)
	}
	if _, err := c.ApplyConfChange(2, bad); err == nil {
		t.Fatal("ApplyConfChange accepted an index that was never handed out")
	}
	cs, err := c.ApplyConfChange(1, bad)
	if !errors.Is(err, ErrInvalidConfChange) || !cs.Equal(conf(nodes(1, 2, 3), nil, nil, nil)) {
		t.Fatalf("got %v, %v; want the configuration unchanged and ErrInvalidConfChange", cs, err)
	}
	c.AppliedTo(1)
	c.Advance(rd)
	if s := c.Status(); !s.Config.Equal(cs) || s.Removed {
		t.Fatalf("status %+v after a refused change", s)
	}
}

// §4.3: in C_old,new an election and a commit each need a majority of both
// configurations.
func TestJointConfigurationNeedsBothMajorities(t *testing.T) {
	joint := conf(nodes(1, 4, 5), nil, nodes(1, 2, 3), nil)
	newJointCore := func(t *testing.T) (*Core, *MemoryStorage) {
		st := NewMemoryStorage()
		st.SetConfState(joint)
		c, err := New(testConfig(1, nil, st))
		if err != nil {
			t.Fatal(err)
		}
		return c, st
	}
	t.Run("election", func(t *testing.T) {
		c, st := newJointCore(t)
		_ = c.Campaign()
		var asked []uint64
		for _, m := range ofType(sent(t, c, st), raftpb.MsgVote) {
			asked = append(asked, m.To)
		}
		if !slices.Equal(asked, nodes(2, 3, 4, 5)) {
			t.Fatalf("asked %v for votes, want both halves: [2 3 4 5]", asked)
		}
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: 4, To: 1, Term: 1})
		if s := c.Status(); s.Role != Candidate {
			t.Fatalf("a majority of C_new alone made it %v", s.Role)
		}
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: 3, To: 1, Term: 1})
		if s := c.Status(); s.Role != Leader {
			t.Fatalf("majorities of both made it %v, want leader", s.Role)
		}
	})
	t.Run("election needs C_new too", func(t *testing.T) {
		c, _ := newJointCore(t)
		_ = c.Campaign()
		for _, from := range nodes(2, 3) {
			mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: from, To: 1, Term: 1})
		}
		if s := c.Status(); s.Role != Candidate {
			t.Fatalf("a majority of C_old alone made it %v", s.Role)
		}
	})
	t.Run("election lost by the incoming half", func(t *testing.T) {
		c, _ := newJointCore(t)
		_ = c.Campaign()
		for _, from := range nodes(2, 3) {
			mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: from, To: 1, Term: 1})
		}
		for _, from := range nodes(4, 5) {
			mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: from, To: 1, Term: 1, Reject: true})
		}
		if s := c.Status(); s.Role != Follower {
			t.Fatalf("rejected by C_new, it is %v; want follower", s.Role)
		}
	})
	t.Run("commit and read index", func(t *testing.T) {
		c, st := newJointCore(t)
		_ = c.Campaign()
		for _, from := range nodes(2, 4) {
			mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: from, To: 1, Term: 1})
		}
		persist(t, c, st)
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: 5, To: 1, Term: 1, Index: 1})
		if got := c.Status().Commit; got != 0 {
			t.Fatalf("C_new alone committed up to %d", got)
		}
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 1})
		if got := c.Status().Commit; got != 1 {
			t.Fatalf("both majorities acknowledged entry 1, commit is %d", got)
		}
		persist(t, c, st)
		c.ReadIndex([]byte("r"))
		hbs := ofType(sent(t, c, st), raftpb.MsgHeartbeat)
		if len(hbs) != 4 {
			t.Fatalf("sent %d heartbeats for the read, want 4", len(hbs))
		}
		for _, from := range nodes(4, 5) {
			mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: from, To: 1, Term: 1, Context: hbs[0].Context})
		}
		if rd := persist(t, c, st); len(rd.ReadStates) != 0 {
			t.Fatalf("C_new alone confirmed a read: %v", rd.ReadStates)
		}
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1, Context: hbs[0].Context})
		if rd := persist(t, c, st); len(rd.ReadStates) != 1 {
			t.Fatalf("both majorities confirmed, read states %v", rd.ReadStates)
		}
	})
}

func TestLearnerVotesNotCounted(t *testing.T) {
	st := NewMemoryStorage()
	st.SetConfState(conf(nodes(1, 2, 3), nodes(4), nil, nil))
	c, err := New(testConfig(1, nil, st))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Campaign()
	for _, m := range ofType(sent(t, c, st), raftpb.MsgVote) {
		if m.To == 4 {
			t.Fatal("the candidate asked a learner for its vote")
		}
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: 4, To: 1, Term: 1})
	if s := c.Status(); s.Role != Candidate {
		t.Fatalf("a learner's vote made it %v", s.Role)
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: 2, To: 1, Term: 1})
	if s := c.Status(); s.Role != Leader {
		t.Fatalf("two voters of three made it %v", s.Role)
	}
}

// A snapshot carries the configuration at its index, joint included, and
// installing it switches the follower to it.
func TestSnapshotCarriesJointConfiguration(t *testing.T) {
	c, st := newTestCore(t, 2, nodes(1, 2, 3))
	joint := conf(nodes(1, 2, 4), nil, nodes(1, 2, 3), nil)
	snap := raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 10, Term: 2, ConfState: joint}, Data: []byte("s")}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &snap})
	if got := c.ConfState(); !got.Equal(joint) {
		t.Fatalf("after the snapshot: %v, want %v", got, joint)
	}
	rd := c.Ready()
	save(t, st, rd)
	if !rd.Snapshot.Metadata.ConfState.Equal(joint) {
		t.Fatalf("Ready's snapshot holds %v", rd.Snapshot.Metadata.ConfState)
	}
	c.AppliedTo(10)
	c.Advance(rd)
	// The leader's leave entry follows; applying it ends the joint phase.
	leave := raftpb.ConfChange{}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 2, Index: 10, LogTerm: 2, Commit: 11,
		Entries: []raftpb.Entry{{Term: 2, Index: 11, Type: raftpb.EntryConfChange, Data: leave.Marshal()}}})
	rd = c.Ready()
	save(t, st, rd)
	cs, err := c.ApplyConfChange(11, leave)
	if err != nil || !cs.Equal(conf(nodes(1, 2, 4), nil, nil, nil)) {
		t.Fatalf("leave: %v, %v", cs, err)
	}
	c.Advance(rd)
	// A restart finds the joint configuration in the storage's snapshot
	// and the leave entry in its log.
	c2, err := New(testConfig(2, nil, st))
	if err != nil {
		t.Fatal(err)
	}
	if got := c2.ConfState(); !got.Equal(cs) {
		t.Fatalf("restarted with %v, want %v", got, cs)
	}
}

func TestJoinerLearnsConfigurationFromSnapshot(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	nw.propose(1, "a")
	nw.join(4)
	nw.isolate(4)
	nw.change(1, addLearner(4))
	// The leader snapshots with the configuration its state machine
	// recorded, and compacts.
	n1 := nw.nodes[1]
	idx := nw.core(1).Status().Applied
	cs := n1.confs[len(n1.confs)-1]
	if _, err := n1.storage.CreateSnapshot(idx, &cs, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := n1.storage.Compact(idx); err != nil {
		t.Fatal(err)
	}
	nw.heal()
	nw.tick(1, 1)
	nw.stabilize()
	want := conf(nodes(1, 2, 3), nodes(4), nil, nil)
	nw.checkConf(want, 4)
	if got := nw.nodes[4].confs; len(got) != 1 || !got[0].Equal(want) {
		t.Fatalf("node 4 recorded %v, want only the snapshot's %v", got, want)
	}
	nw.propose(1, "b")
	nw.stabilize()
	if got := nw.appliedData(4); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("node 4 applied %q after the snapshot, want [b]", got)
	}
}

// After a crash the configuration comes back from the log: New applies the
// committed changes again, and answers the runtime's re-application of
// them with what each led to.
func TestRestartRebuildsConfigurationFromLog(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	nw.join(4)
	nw.change(1, addLearner(4))
	nw.change(1, addVoter(4), removeNode(2))
	nw.propose(1, "x")
	nw.stabilize()
	want := conf(nodes(1, 3, 4), nil, nil, nil)
	nw.checkConf(want, 1, 3, 4)
	history := slices.Clone(nw.nodes[3].confs)

	nw.restart(3) // Applied 0: the state machine starts empty
	nw.checkConf(want, 3)
	nw.stabilize()
	if got := nw.nodes[3].confs; !reflect.DeepEqual(got, history) {
		t.Fatalf("re-applying the log recorded %v, want %v as before", got, history)
	}

	// A state machine that kept everything up to the joint entry is
	// answered from the leave entry on.
	var jointIndex uint64
	for _, e := range nw.nodes[1].applied {
		if e.Type == raftpb.EntryConfChange {
			if cc, _ := raftpb.UnmarshalConfChange(e.Data); len(cc.Changes) == 2 {
				jointIndex = e.Index
			}
		}
	}
	n1 := nw.nodes[1]
	n1.cfg.Applied = jointIndex
	nw.start(1, n1.cfg, n1.storage)
	nw.checkConf(want, 1)
	nw.stabilize()
	if got := nw.nodes[1].confs; !reflect.DeepEqual(got, []raftpb.ConfState{want}) {
		t.Fatalf("re-applying from %d recorded %v, want just %v", jointIndex, got, want)
	}
}

// A snapshot's configuration already holds every change up to its index.
// Stores keep a few entries from before the snapshot for lagging followers
// (MemoryStorage after a short Compact, the node's storage by design), so
// New must replay only the changes after the snapshot, not those after the
// first stored entry: applied twice, "add learner 4" demotes voter 4.
func TestRestartFromSnapshotWithOlderEntriesKept(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	nw.join(4)
	nw.change(1, addLearner(4))
	nw.change(1, addVoter(4))
	nw.propose(1, "x")
	nw.stabilize()
	want := conf(nodes(1, 2, 3, 4), nil, nil, nil)
	nw.checkConf(want, 3)

	n3 := nw.nodes[3]
	last, _ := n3.storage.LastIndex()
	if _, err := n3.storage.CreateSnapshot(last, &want, nil); err != nil {
		t.Fatal(err)
	}
	if err := n3.storage.Compact(1); err != nil { // keeps 2..last: every change
		t.Fatal(err)
	}
	n3.cfg.Applied = last
	nw.start(3, n3.cfg, n3.storage)
	nw.checkConf(want, 3)
}

func TestForwardedConfChange(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	nw.join(4)
	nw.change(3, addLearner(4))
	nw.checkConf(conf(nodes(1, 2, 3), nodes(4), nil, nil), 1, 2, 3, 4)
}

// A transfer to a node that a change then removes is abandoned.
func TestLeadTransferAbortedWhenTransfereeRemoved(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3)
	nw.elect(1)
	nw.isolate(3) // lagging: the transfer has to wait for it
	if err := nw.core(1).ProposeConfChange(confChange(removeNode(3))); err != nil {
		t.Fatal(err)
	}
	nw.core(1).TransferLeadership(3)
	nw.stabilize()
	nw.checkConf(conf(nodes(1, 2), nil, nil, nil), 1, 2)
	if got := nw.leaders(); !slices.Equal(got, nodes(1)) {
		t.Fatalf("leaders %v, want [1]", got)
	}
	// The leader accepts proposals again: no transfer is under way.
	nw.propose(1, "x")
	nw.stabilize()
	if got := nw.appliedData(2); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("node 2 applied %q", got)
	}
}

func TestNonMemberNeverCampaigns(t *testing.T) {
	c, st := newTestCore(t, 4, nil)
	if s := c.Status(); s.Removed || !isEmptyConf(s.Config) {
		t.Fatalf("a node with no configuration: %+v", s)
	}
	for range 100 {
		c.Tick()
	}
	if msgs := sent(t, c, st); len(msgs) != 0 || c.Status().Term != 0 {
		t.Fatalf("a node with no configuration sent %v and reached term %d", msgs, c.Status().Term)
	}
}

func TestKnobSkipJointConsensus(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3, func(c *Config) { c.Knobs.SkipJointConsensus = true })
	nw.elect(1)
	nw.join(4, func(c *Config) { c.Knobs.SkipJointConsensus = true })
	nw.join(5, func(c *Config) { c.Knobs.SkipJointConsensus = true })
	nw.change(1, addVoter(4), addVoter(5))
	for _, cs := range nw.nodes[1].confs {
		if cs.Joint() {
			t.Fatalf("went through %v with joint consensus off", cs)
		}
	}
	nw.checkConf(conf(nodes(1, 2, 3, 4, 5), nil, nil, nil), 1, 2, 3, 4, 5)
}

func TestKnobAllowConcurrentConfChanges(t *testing.T) {
	nw := newBootstrappedNetwork(t, 3, func(c *Config) { c.Knobs.AllowConcurrentConfChanges = true })
	nw.elect(1)
	c := nw.core(1)
	if err := c.ProposeConfChange(confChange(addVoter(4))); err != nil {
		t.Fatal(err)
	}
	if err := c.ProposeConfChange(confChange(addVoter(5))); err != nil {
		t.Fatalf("second change while the first is pending: %v", err)
	}
	nw.stabilize()
	// The second change applied while joint, on top of C_new: the joint
	// phase of the first was cut short.
	want := []raftpb.ConfState{
		conf(nodes(1, 2, 3, 4), nil, nodes(1, 2, 3), nil),
		conf(nodes(1, 2, 3, 4, 5), nil, nodes(1, 2, 3, 4), nil),
		conf(nodes(1, 2, 3, 4, 5), nil, nil, nil),
	}
	if got := nw.nodes[1].confs[1:]; !reflect.DeepEqual(got, want) {
		t.Fatalf("went through %v, want %v", got, want)
	}
}

func TestKnobRemovedNodesKeepVoting(t *testing.T) {
	knob := func(c *Config) { c.Knobs.RemovedNodesKeepVoting = true }
	nw := newBootstrappedNetwork(t, 5, knob)
	nw.elect(1)
	nw.change(1, removeNode(4), removeNode(5))
	nw.checkConf(conf(nodes(1, 2, 3), nil, nil, nil), 1, 2, 3)
	if !nw.core(4).Status().Removed {
		t.Fatal("node 4 does not know it was removed")
	}
	// Node 2, cut off from 1 and 3, still asks the removed node 4 and
	// counts its vote: two "votes" of three, and a second leader.
	for _, o := range nodes(1, 3) {
		nw.cut[[2]uint64{2, o}], nw.cut[[2]uint64{o, 2}] = true, true
	}
	nw.elect(2)
	if got := nw.leaders(); !slices.Equal(got, nodes(1, 2)) {
		t.Fatalf("leaders %v, want the bug's two: [1 2]", got)
	}
}

// Leadership goes only to a voter that stays: not to one of the outgoing
// half of a joint configuration.
func TestTransferOnlyToIncomingVoter(t *testing.T) {
	st := NewMemoryStorage()
	st.SetConfState(conf(nodes(1, 2), nil, nodes(1, 2, 3), nil))
	c, err := New(testConfig(1, nil, st))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Campaign()
	for _, from := range nodes(2, 3) {
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: from, To: 1, Term: 1})
	}
	persist(t, c, st)
	c.TransferLeadership(3)
	if err := c.Propose([]byte("x")); err != nil {
		t.Fatalf("a transfer to an outgoing voter was started: %v", err)
	}
	c.TransferLeadership(2)
	if err := c.Propose([]byte("y")); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("a transfer to an incoming voter was not started: %v", err)
	}
}
