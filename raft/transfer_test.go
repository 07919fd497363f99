package raft

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func TestTransferToUpToDateFollower(t *testing.T) {
	nw := newNetwork(t, 3, withPreVote, withCheckQuorum)
	nw.elect(1)
	nw.core(1).TransferLeadership(2)
	nw.stabilize()
	if s := nw.core(2).Status(); s.Role != Leader || s.Term != 2 {
		t.Fatalf("node 2 is %v in term %d, want leader in term 2", s.Role, s.Term)
	}
	if s := nw.core(1).Status(); s.Lead != 2 {
		t.Fatalf("node 1 follows %d, want 2", s.Lead)
	}
}

func TestTransferCatchesUpTransfereeFirst(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.isolate(3)
	nw.propose(1, "x")
	nw.stabilize()
	nw.heal()
	nw.core(1).TransferLeadership(3)
	if err := nw.core(1).Propose([]byte("y")); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("proposal during transfer: got %v, want ErrProposalDropped", err)
	}
	nw.stabilize()
	if s := nw.core(3).Status(); s.Role != Leader {
		t.Fatalf("node 3 is %v, want leader", s.Role)
	}
	if got := nw.appliedData(3); len(got) != 1 || got[0] != "x" {
		t.Fatalf("new leader applied %q, want [x]", got)
	}
}

// TestTransferAskedOfFollowerForThirdNode: node 2, a follower, is asked to
// hand leadership from node 1 to node 3. It forwards the request under its
// own name (a transport refuses a message whose From is not the stream's
// peer), naming the transferee in Index.
func TestTransferAskedOfFollowerForThirdNode(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.core(2).TransferLeadership(3)
	nw.process(2)
	if fwd := nw.queue; len(fwd) != 1 || fwd[0].Type != raftpb.MsgTransferLeader || fwd[0].From != 2 || fwd[0].To != 1 || fwd[0].Index != 3 {
		t.Fatalf("node 2 sent %v, want one MsgTransferLeader 2->1 naming 3 in Index", fwd)
	}
	nw.stabilize()
	if s := nw.core(3).Status(); s.Role != Leader {
		t.Fatalf("node 3 is %v, want leader", s.Role)
	}
	for _, id := range []uint64{1, 2} {
		if s := nw.core(id).Status(); s.Lead != 3 {
			t.Fatalf("node %d follows %d, want 3", id, s.Lead)
		}
	}
}

// TestTransferAskedOfFollowerForItself: the follower names itself.
func TestTransferAskedOfFollowerForItself(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.core(2).TransferLeadership(2)
	nw.stabilize()
	if s := nw.core(2).Status(); s.Role != Leader {
		t.Fatalf("node 2 is %v, want leader", s.Role)
	}
}

func TestTransferAbortsAfterElectionTimeout(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.isolate(3)
	nw.core(1).TransferLeadership(3)
	nw.stabilize()
	if err := nw.core(1).Propose([]byte("y")); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("got %v, want ErrProposalDropped while transferring", err)
	}
	nw.tick(1, nw.nodes[1].cfg.ElectionTicks)
	if err := nw.core(1).Propose([]byte("y")); err != nil {
		t.Fatalf("after the transfer timed out: %v, want proposals accepted", err)
	}
}

func TestTransferIgnoresSelfAndStrangers(t *testing.T) {
	c, st := leaderOf3(t)
	for _, to := range []uint64{1, 9} {
		c.TransferLeadership(to)
		// The same request forwarded by a follower.
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgTransferLeader, From: 2, To: 1, Index: to})
		if got := ofType(sent(t, c, st), raftpb.MsgTimeoutNow); len(got) != 0 {
			t.Fatalf("transfer to %d sent %v", to, got)
		}
		if err := c.Propose([]byte("x")); err != nil {
			t.Fatalf("transfer to %d blocked proposals: %v", to, err)
		}
	}
}

func TestTransferIgnoresLearners(t *testing.T) {
	st := NewMemoryStorage()
	st.SetConfState(raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{3}})
	c, err := New(testConfig(1, nil, st))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Campaign(); err != nil {
		t.Fatal(err)
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: 2, To: 1, Term: 1})
	persist(t, c, st)
	if c.Status().Role != Leader {
		t.Fatal("setup: node 1 not elected")
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgTransferLeader, From: 2, To: 1, Index: 3})
	if got := ofType(sent(t, c, st), raftpb.MsgTimeoutNow); len(got) != 0 {
		t.Fatalf("transfer to learner 3 sent %v", got)
	}
	if err := c.Propose([]byte("x")); err != nil {
		t.Fatalf("transfer to a learner blocked proposals: %v", err)
	}
}

func TestTransferWithoutTransfereeIsInvalid(t *testing.T) {
	c, _ := leaderOf3(t)
	err := c.Step(raftpb.Message{Type: raftpb.MsgTransferLeader, From: 2, To: 1})
	if !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("got %v, want ErrInvalidMessage", err)
	}
}

// TestForwardedRequestsCarryTheForwarder: node 1 forwarded a proposal to
// node 2, which lost leadership to node 3 meanwhile. Node 2 forwards it
// again, under its own name. A read index request from a peer is dropped
// instead: the answer would come back to node 2, and the peer retries.
func TestForwardedRequestsCarryTheForwarder(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(3)
	mustStep(t, nw.core(2), raftpb.Message{Type: raftpb.MsgProp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: []byte("x")}}})
	mustStep(t, nw.core(2), raftpb.Message{Type: raftpb.MsgReadIndex, From: 1, To: 2, Context: []byte("r")})
	nw.process(2)
	if fwd := nw.queue; len(fwd) != 1 || fwd[0].Type != raftpb.MsgProp || fwd[0].From != 2 || fwd[0].To != 3 {
		t.Fatalf("node 2 sent %v, want the proposal forwarded alone, as MsgProp 2->3", fwd)
	}
	nw.stabilize()
	if got := nw.appliedData(1); len(got) != 1 || got[0] != "x" {
		t.Fatalf("node 1 applied %q, want [x]", got)
	}
}

func TestStepRefusesOwnName(t *testing.T) {
	c, _ := leaderOf3(t)
	err := c.Step(raftpb.Message{Type: raftpb.MsgProp, From: 1, To: 1, Entries: []raftpb.Entry{{Data: []byte("x")}}})
	if !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("got %v, want ErrInvalidMessage for a message claiming to come from the node itself", err)
	}
}
