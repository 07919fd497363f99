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

func TestTransferViaFollower(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.core(2).TransferLeadership(3)
	nw.stabilize()
	if s := nw.core(3).Status(); s.Role != Leader {
		t.Fatalf("node 3 is %v, want leader", s.Role)
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
		if got := ofType(sent(t, c, st), raftpb.MsgTimeoutNow); len(got) != 0 {
			t.Fatalf("transfer to %d sent %v", to, got)
		}
		if err := c.Propose([]byte("x")); err != nil {
			t.Fatalf("transfer to %d blocked proposals: %v", to, err)
		}
	}
}

func TestProposalForwardedBackToItsOrigin(t *testing.T) {
	// Node 1 forwarded a proposal to node 2, which had lost leadership to
	// node 1 meanwhile and forwards it back: node 1 must accept its own
	// request (found by the simulator).
	c, st := leaderOf3(t)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgProp, From: 1, To: 1, Entries: []raftpb.Entry{{Data: []byte("x")}}})
	if rd := persist(t, c, st); len(rd.Entries) != 1 || string(rd.Entries[0].Data) != "x" {
		t.Fatalf("got entries %v, want x appended", rd.Entries)
	}
	// Likewise a read index request: the answer is local.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgReadIndex, From: 1, To: 1, Context: []byte("r")})
	hbs := ofType(persist(t, c, st).Messages, raftpb.MsgHeartbeat)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1, Context: hbs[0].Context})
	if rd := persist(t, c, st); len(rd.ReadStates) != 1 || string(rd.ReadStates[0].Context) != "r" {
		t.Fatalf("got %v, want read r answered locally", rd.ReadStates)
	}
}
