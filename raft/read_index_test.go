package raft

import (
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func TestReadIndexSingleNodeAnswersAtOnce(t *testing.T) {
	c, st := newTestCore(t, 1, []uint64{1})
	_ = c.Campaign()
	persist(t, c, st) // the leader's empty entry becomes durable...
	persist(t, c, st) // ...and committed
	c.ReadIndex([]byte("r1"))
	rd := persist(t, c, st)
	if len(rd.ReadStates) != 1 || string(rd.ReadStates[0].Context) != "r1" || rd.ReadStates[0].Index != 1 {
		t.Fatalf("got %v, want r1 at index 1", rd.ReadStates)
	}
}

func TestReadIndexSharesOneHeartbeatRound(t *testing.T) {
	c, st := leaderOf3(t)
	for _, ctx := range []string{"a", "b", "c"} {
		c.ReadIndex([]byte(ctx))
	}
	rd := persist(t, c, st)
	hbs := ofType(rd.Messages, raftpb.MsgHeartbeat)
	if len(hbs) != 2 || len(hbs[0].Context) != 8 {
		t.Fatalf("got heartbeats %v, want one round (2 heartbeats carrying the round)", hbs)
	}
	if len(rd.ReadStates) != 0 {
		t.Fatalf("answered %v before confirming leadership", rd.ReadStates)
	}
	// One acknowledgement plus the leader is a quorum of three.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1, Context: hbs[0].Context})
	rd = persist(t, c, st)
	if len(rd.ReadStates) != 3 {
		t.Fatalf("got %v, want the three reads answered", rd.ReadStates)
	}
	for i, want := range []string{"a", "b", "c"} {
		if got := rd.ReadStates[i]; string(got.Context) != want || got.Index != 1 {
			t.Fatalf("read %d: got %+v, want %q at index 1", i, got, want)
		}
	}
}

func TestReadIndexAfterRoundLeftNeedsNewRound(t *testing.T) {
	c, st := leaderOf3(t)
	c.ReadIndex([]byte("a"))
	first := ofType(persist(t, c, st).Messages, raftpb.MsgHeartbeat)
	// A request arriving after the round's heartbeats left must not be
	// confirmed by their answers: they may predate it.
	c.ReadIndex([]byte("b"))
	second := ofType(persist(t, c, st).Messages, raftpb.MsgHeartbeat)
	if len(second) != 2 || string(second[0].Context) == string(first[0].Context) {
		t.Fatalf("second request did not start a new round: %v then %v", first, second)
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1, Context: first[0].Context})
	rd := persist(t, c, st)
	if len(rd.ReadStates) != 1 || string(rd.ReadStates[0].Context) != "a" {
		t.Fatalf("after the first round's ack got %v, want only a", rd.ReadStates)
	}
	// A later round's ack confirms every round before it.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 3, To: 1, Term: 1, Context: second[0].Context})
	rd = persist(t, c, st)
	if len(rd.ReadStates) != 1 || string(rd.ReadStates[0].Context) != "b" {
		t.Fatalf("after the second round's ack got %v, want b", rd.ReadStates)
	}
}

func TestReadIndexIgnoresBogusAcks(t *testing.T) {
	c, st := leaderOf3(t)
	c.ReadIndex([]byte("a"))
	persist(t, c, st)
	for _, ctx := range [][]byte{nil, []byte("x"), {0, 0, 0, 0, 0, 0, 0, 99}} {
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1, Context: ctx})
	}
	if rd := persist(t, c, st); len(rd.ReadStates) != 0 {
		t.Fatalf("bogus acknowledgements confirmed %v", rd.ReadStates)
	}
}

func TestReadIndexWaitsForCommitInTerm(t *testing.T) {
	c, st := newElected(t)
	c.ReadIndex([]byte("early"))
	if hbs := ofType(sent(t, c, st), raftpb.MsgHeartbeat); len(hbs) != 0 {
		t.Fatalf("new leader started a read round before committing in its term: %v", hbs)
	}
	// The empty entry commits: the queued read is served through a round.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 1})
	hbs := ofType(sent(t, c, st), raftpb.MsgHeartbeat)
	if len(hbs) != 2 {
		t.Fatalf("got %v, want a heartbeat round once the term's entry committed", hbs)
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 3, To: 1, Term: 1, Context: hbs[0].Context})
	rd := persist(t, c, st)
	if len(rd.ReadStates) != 1 || rd.ReadStates[0].Index != 1 {
		t.Fatalf("got %v, want early at index 1", rd.ReadStates)
	}
}

func TestReadIndexThroughFollower(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.propose(1, "x")
	nw.stabilize()
	nw.core(2).ReadIndex([]byte("f"))
	nw.stabilize()
	reads := nw.nodes[2].reads
	if len(reads) != 1 || string(reads[0].Context) != "f" || reads[0].Index != 2 {
		t.Fatalf("follower got %v, want f at index 2", reads)
	}
	if len(nw.nodes[1].reads) != 0 {
		t.Fatalf("leader kept the follower's read: %v", nw.nodes[1].reads)
	}
}

func TestReadIndexWithoutLeaderIsDropped(t *testing.T) {
	c, st := newTestCore(t, 1, []uint64{1, 2, 3})
	c.ReadIndex([]byte("r"))
	if c.HasReady() {
		t.Fatalf("read without leader produced %+v", c.Ready())
	}
	_ = st
}

func TestReadsDroppedWhenLeaderStepsDown(t *testing.T) {
	c, st := leaderOf3(t)
	c.ReadIndex([]byte("a"))
	hbs := ofType(persist(t, c, st).Messages, raftpb.MsgHeartbeat)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2})
	// An ack from the old term must not answer anything now.
	_ = c.Step(raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 3, To: 1, Term: 1, Context: hbs[0].Context})
	if rd := persist(t, c, st); len(rd.ReadStates) != 0 {
		t.Fatalf("deposed leader answered %v", rd.ReadStates)
	}
}
