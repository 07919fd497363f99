package raft

import (
	"math/rand/v2"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// randomMessage makes a message that is plausible enough to get past
// validation some of the time: terms, indexes and ids near the real ones.
func randomMessage(r *rand.Rand, to, term, last uint64) raftpb.Message {
	near := func(v uint64) uint64 {
		switch r.IntN(6) {
		case 0:
			return 0
		case 1:
			return ^uint64(0) - uint64(r.IntN(2))
		}
		d := uint64(r.IntN(5))
		if r.IntN(2) == 0 && v >= d {
			return v - d
		}
		return v + d
	}
	m := raftpb.Message{
		Type:       raftpb.MessageType(r.IntN(20)),
		From:       uint64(r.IntN(5)),
		To:         to,
		Term:       near(term),
		LogTerm:    near(term),
		Index:      near(last),
		Commit:     near(last),
		Reject:     r.IntN(3) == 0,
		RejectHint: near(last),
		HintTerm:   near(term),
	}
	if r.IntN(10) == 0 {
		m.To = uint64(r.IntN(5))
	}
	for i := range r.IntN(4) {
		e := raftpb.Entry{Index: m.Index + 1 + uint64(i), Term: m.Term, Data: []byte{byte(i)}}
		if r.IntN(3) == 0 {
			// A membership change, sensible or not (or not even one).
			e.Type = raftpb.EntryConfChange
			if r.IntN(4) > 0 {
				cc := raftpb.ConfChange{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeType(1 + r.IntN(3)), NodeID: uint64(r.IntN(6))}}}
				if r.IntN(4) == 0 {
					cc.Changes = nil
				}
				e.Data = cc.Marshal()
			}
		}
		m.Entries = append(m.Entries, e)
	}
	if r.IntN(4) == 0 {
		m.Snapshot = &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: near(last), Term: near(term)}}
		if r.IntN(2) == 0 {
			ids := func() []uint64 {
				var out []uint64
				for range r.IntN(4) {
					out = append(out, uint64(r.IntN(6)))
				}
				return out
			}
			m.Snapshot.Metadata.ConfState = raftpb.ConfState{Voters: ids(), Learners: ids(), VotersOutgoing: ids(), LearnersNext: ids()}
		}
	}
	if r.IntN(3) == 0 {
		m.Context = []byte{0, 0, 0, 0, 0, 0, 0, byte(r.IntN(3))}
	}
	return m
}

// TestGarbageNeverPanics throws random messages at the nodes of a working
// cluster and checks that nothing panics and that terms and commit indexes
// never go backwards.
func TestGarbageNeverPanics(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 20
	}
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 7))
		nw := newNetwork(t, 3, withPreVote, withCheckQuorum)
		nw.elect(1)
		nw.propose(1, "a")
		nw.stabilize()
		prev := map[uint64]Status{}
		for range 300 {
			id := uint64(1 + r.IntN(3))
			c := nw.core(id)
			switch r.IntN(5) {
			case 0:
				c.Tick()
			case 1:
				_ = c.Propose([]byte("p"))
			case 2:
				cc := raftpb.ConfChange{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeType(1 + r.IntN(3)), NodeID: uint64(1 + r.IntN(5))}}}
				_ = c.ProposeConfChange(cc)
			default:
				s := c.Status()
				_ = c.Step(randomMessage(r, id, s.Term, s.Commit+2))
			}
			// Run the runtime, but let garbage responses loose too.
			for nw.process(id) {
			}
			nw.queue = nil
			s := c.Status()
			if p, ok := prev[id]; ok && (s.Term < p.Term || s.Commit < p.Commit) {
				t.Fatalf("seed %d node %d: term/commit went from %d/%d to %d/%d", seed, id, p.Term, p.Commit, s.Term, s.Commit)
			}
			if last := c.log.lastIndex(); s.Commit > last || s.Applied > s.Commit {
				t.Fatalf("seed %d node %d: applied %d commit %d last %d", seed, id, s.Applied, s.Commit, last)
			}
			prev[id] = s
		}
	}
}

// FuzzStep decodes arbitrary bytes as a message and steps it into a leader
// and a follower: whatever gets through the decoder must not panic the core.
func FuzzStep(f *testing.F) {
	for _, m := range []raftpb.Message{
		{Type: raftpb.MsgApp, From: 2, To: 1, Term: 1, Index: 1, LogTerm: 1, Entries: []raftpb.Entry{{Index: 2, Term: 1}}},
		{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 1},
		{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 1, Reject: true, RejectHint: 0},
		{Type: raftpb.MsgVote, From: 2, To: 1, Term: 2, Index: 5, LogTerm: 1},
		{Type: raftpb.MsgHeartbeatResp, From: 3, To: 1, Term: 1, Context: []byte{0, 0, 0, 0, 0, 0, 0, 1}},
		{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 3, Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 9, Term: 2}}},
		{Type: raftpb.MsgReadIndex, From: 3, To: 1, Context: []byte("r")},
		{Type: raftpb.MsgProp, From: 2, To: 1, Entries: []raftpb.Entry{{Type: raftpb.EntryConfChange, Data: (&raftpb.ConfChange{
			Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearner, NodeID: 4}}}).Marshal()}}},
		{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 3, Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 9, Term: 2,
			ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 4}, VotersOutgoing: []uint64{1, 2, 3}, LearnersNext: []uint64{3}}}}},
	} {
		f.Add(m.MarshalAppend(nil), uint8(0))
		f.Add(m.MarshalAppend(nil), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, role uint8) {
		m, err := raftpb.UnmarshalMessage(data)
		if err != nil {
			return
		}
		var c *Core
		var st *MemoryStorage
		if role%2 == 0 {
			c, st = leaderOf3(t)
		} else {
			c, st = coreWithLog(t, 1, []uint64{1, 2, 3}, 1, []uint64{1, 1})
		}
		m.To = 1
		before := c.Status()
		_ = c.Step(m)
		if c.HasReady() {
			persist(t, c, st)
		}
		after := c.Status()
		if after.Term < before.Term || after.Commit < before.Commit || after.Commit > c.log.lastIndex() {
			t.Fatalf("%v: %+v -> %+v", m, before, after)
		}
	})
}
