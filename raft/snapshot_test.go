package raft

import (
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// compactLeader makes node 1 snapshot and compact its log at its applied
// index, as a runtime would.
func compactLeader(t *testing.T, nw *network, id uint64) uint64 {
	t.Helper()
	st := nw.nodes[id].storage
	idx := nw.core(id).Status().Applied
	if _, err := st.CreateSnapshot(idx, nil, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := st.Compact(idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestLaggingFollowerGetsSnapshot(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.isolate(3)
	for _, d := range []string{"a", "b", "c"} {
		nw.propose(1, d)
	}
	nw.stabilize()
	snapIdx := compactLeader(t, nw, 1)
	nw.heal()
	nw.tick(1, 1)
	nw.stabilize()

	snaps := 0
	for _, m := range nw.trace {
		if m.Type == raftpb.MsgSnap && m.To == 3 {
			snaps++
			if m.Snapshot.Metadata.Index != snapIdx || string(m.Snapshot.Data) != "state" {
				t.Fatalf("sent snapshot %+v, want index %d with the state", m.Snapshot.Metadata, snapIdx)
			}
		}
	}
	if snaps != 1 {
		t.Fatalf("sent %d snapshots to node 3, want 1", snaps)
	}
	// The transport reports the snapshot delivered.
	mustStep(t, nw.core(1), raftpb.Message{Type: raftpb.MsgSnapStatus, From: 3, To: 1})
	nw.propose(1, "d")
	nw.stabilize()
	s3 := nw.core(3).Status()
	if s3.Commit != nw.core(1).Status().Commit {
		t.Fatalf("node 3 commit %d, leader %d", s3.Commit, nw.core(1).Status().Commit)
	}
	if got := nw.appliedData(3); len(got) != 1 || got[0] != "d" {
		t.Fatalf("node 3 applied %q after the snapshot, want [d]", got)
	}
	// A restart from storage keeps the snapshot's place.
	nw.restart(3)
	if s := nw.core(3).Status(); s.Commit < snapIdx {
		t.Fatalf("restarted node 3 commit %d, want at least %d", s.Commit, snapIdx)
	}
	if pr := nw.core(1).Status().Progress[3]; pr.State != StateReplicate {
		t.Fatalf("leader's progress for 3 is %v, want replicate", pr.State)
	}
}

func TestSnapshotFailureAndExpiry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		report func(c *Core)
	}{
		{"reported failure", func(c *Core) {
			_ = c.Step(raftpb.Message{Type: raftpb.MsgSnapStatus, From: 3, To: 1, Reject: true})
		}},
		{"report lost", func(c *Core) {
			for range 2 * c.cfg.ElectionTicks {
				c.Tick()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := newNetwork(t, 3)
			nw.elect(1)
			nw.isolate(3)
			nw.propose(1, "a")
			nw.stabilize()
			compactLeader(t, nw, 1)
			nw.heal()
			// The snapshot is lost on the way.
			nw.mangle = func(m raftpb.Message) (raftpb.Message, bool) { return m, m.Type != raftpb.MsgSnap }
			nw.tick(1, 1)
			nw.stabilize()
			if pr := nw.core(1).Status().Progress[3]; pr.State != StateSnapshot {
				t.Fatalf("progress %v, want snapshot", pr.State)
			}
			nw.mangle = nil
			tc.report(nw.core(1))
			if pr := nw.core(1).Status().Progress[3]; pr.State != StateProbe {
				t.Fatalf("after %s progress %v, want probe", tc.name, pr.State)
			}
			nw.tick(1, 1)
			nw.stabilize()
			if got := nw.core(3).Status().Commit; got != nw.core(1).Status().Commit {
				t.Fatalf("node 3 commit %d, want the leader's %d", got, nw.core(1).Status().Commit)
			}
		})
	}
}

func TestFollowerIgnoresOldSnapshot(t *testing.T) {
	c, st := coreWithLog(t, 2, []uint64{1, 2, 3}, 1, []uint64{1, 1, 1})
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 1, Index: 3, LogTerm: 1, Commit: 3})
	persist(t, c, st)
	snap := &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 2, Term: 1, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 1, Snapshot: snap})
	rd := persist(t, c, st)
	if !rd.Snapshot.IsEmpty() {
		t.Fatalf("restored a snapshot older than the commit index")
	}
	if r := ofType(rd.MessagesAfterPersist, raftpb.MsgAppResp); len(r) != 1 || r[0].Index != 3 {
		t.Fatalf("got %v, want an ack of index 3", r)
	}
	// A snapshot whose last entry we hold only fast-forwards the commit,
	// and acknowledges no further: our entry 4 may not be the leader's.
	snap.Metadata.Index = 3
	c2, st2 := coreWithLog(t, 2, []uint64{1, 2, 3}, 1, []uint64{1, 1, 1, 1})
	mustStep(t, c2, raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 1, Snapshot: snap})
	rd = persist(t, c2, st2)
	if !rd.Snapshot.IsEmpty() || c2.Status().Commit != 3 {
		t.Fatalf("snapshot of a held entry: restored=%v commit=%d, want no restore and commit 3", !rd.Snapshot.IsEmpty(), c2.Status().Commit)
	}
	if r := ofType(rd.MessagesAfterPersist, raftpb.MsgAppResp); len(r) != 1 || r[0].Index != 3 {
		t.Fatalf("got %v, want an ack of index 3", r)
	}
}
