package raft

import (
	"fmt"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// TestFigure7 tells the story of the Raft paper's Figure 7: a leader comes
// to power in term 8 and finds followers whose logs are missing entries,
// have extra uncommitted entries, or both. Each is repaired, and thanks to
// the conflict hint it takes at most one rejected append (two round trips),
// however far back the logs diverge.
func TestFigure7(t *testing.T) {
	leader := []uint64{1, 1, 1, 4, 4, 5, 5, 6, 6, 6}
	for _, tc := range []struct {
		name          string
		follower      []uint64
		maxRejections int
	}{
		{"(a) missing one entry", []uint64{1, 1, 1, 4, 4, 5, 5, 6, 6}, 1},
		{"(b) missing many entries", []uint64{1, 1, 1, 4}, 1},
		{"(c) one extra uncommitted entry", []uint64{1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}, 0},
		{"(d) extra entries of a later term", []uint64{1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}, 0},
		{"(e) missing entries and extra ones of term 4", []uint64{1, 1, 1, 4, 4, 4, 4}, 1},
		{"(f) a whole divergent history from terms 2 and 3", []uint64{1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Node 1 holds the leader's log, node 2 the follower's, and
			// node 3 a copy of the leader's so that node 1 can win
			// whatever node 2 thinks of it. All are in term 7.
			nw := newNetworkWithLogs(t, 7, [][]uint64{leader, tc.follower, leader})
			nw.elect(1)
			if got := nw.core(1).Status().Term; got != 8 {
				t.Fatalf("leader in term %d, want 8", got)
			}
			// The leader appended an empty entry of term 8; the follower
			// now holds exactly the leader's log.
			want := append(slices.Clone(leader), 8)
			if got := nw.logTerms(2); !slices.Equal(got, want) {
				t.Fatalf("follower log %v, want %v", got, want)
			}
			rejections := 0
			for _, m := range nw.trace {
				if m.Type == raftpb.MsgAppResp && m.From == 2 && m.Reject {
					rejections++
				}
			}
			if rejections > tc.maxRejections {
				t.Fatalf("follower rejected %d appends, want at most %d", rejections, tc.maxRejections)
			}
			if s := nw.core(2).Status(); s.Commit != 11 {
				t.Fatalf("follower commit %d, want 11", s.Commit)
			}
		})
	}
}

// TestFigure8 tells the story of the Raft paper's Figure 8, which shows why
// a leader must not commit an entry of an earlier term by counting replicas.
// Five servers S1..S5. Terms differ from the paper's because here every new
// leader appends an empty entry, but the shape is the same.
func TestFigure8(t *testing.T) {
	for _, knob := range []bool{false, true} {
		t.Run(fmt.Sprintf("CommitOldTermByCounting=%v", knob), func(t *testing.T) {
			figure8(t, knob)
		})
	}
}

func figure8(t *testing.T, commitOldTerm bool) {
	nw := newNetwork(t, 5, func(c *Config) {
		c.Knobs.CommitOldTermByCounting = commitOldTerm
		// One entry per append, so that an append can be lost alone.
		c.MaxSizePerMsg = 1
		c.MaxInflightBytes = 0
	})
	nw.elect(1)

	// (a) S1 leads (term 1) and replicates entry 2 ("old") to S2 only.
	cutExcept(nw, 1, 2)
	nw.propose(1, "old")
	nw.stabilize()
	if got := nw.logTerms(2); !slices.Equal(got, []uint64{1, 1}) {
		t.Fatalf("(a) S2 log %v, want [1 1]", got)
	}

	// (b) S1 crashes. S5 is elected in term 2 by S3, S4 and itself, and
	// appends its own entry at index 2, which reaches nobody.
	nw.heal()
	nw.isolate(1)
	nw.isolate(2)
	if err := nw.core(5).Campaign(); err != nil {
		t.Fatal(err)
	}
	nw.process(5)
	nw.deliver() // vote requests
	nw.process(3)
	nw.process(4)
	nw.deliver() // votes
	if s := nw.core(5).Status(); s.Role != Leader || s.Term != 2 {
		t.Fatalf("(b) S5 is %v in term %d, want leader in term 2", s.Role, s.Term)
	}
	nw.isolate(5)
	nw.stabilize()
	if got := nw.logTerms(5); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("(b) S5 log %v, want [1 2]", got)
	}

	// (c) S5 crashes; S1 restarts and is elected by S2 and S3 (term 3).
	// It replicates entry 2 to S3: now S1, S2 and S3 store it, a
	// majority. Its own term-3 entry (index 3) has not reached S3, and
	// S1's commit index reaches nobody before it crashes again.
	nw.heal()
	nw.isolate(5)
	nw.cut[[2]uint64{1, 4}], nw.cut[[2]uint64{4, 1}] = true, true
	nw.restart(1)
	nw.mangle = func(m raftpb.Message) (raftpb.Message, bool) {
		if m.From != 1 {
			return m, true
		}
		if m.Type == raftpb.MsgApp && m.To == 3 {
			m.Entries = slices.DeleteFunc(slices.Clone(m.Entries), func(e raftpb.Entry) bool { return e.Index > 2 })
		}
		m.Commit = min(m.Commit, 1)
		return m, true
	}
	nw.tickUntilLeader(1)
	if got := nw.logTerms(3); !slices.Equal(got, []uint64{1, 1}) {
		t.Fatalf("(c) S3 log %v, want [1 1]", got)
	}
	s1 := nw.core(1).Status()
	if s1.Term != 3 || s1.Progress[3].Match != 2 {
		t.Fatalf("(c) S1 term %d, S3 match %d; want 3 and 2", s1.Term, s1.Progress[3].Match)
	}
	if !commitOldTerm {
		// The rule: entry 2 is on a majority, but it is from term 1, so
		// S1 does not count it committed.
		if s1.Commit != 1 {
			t.Fatalf("(c) S1 committed %d by counting replicas of an old term, want 1", s1.Commit)
		}
		// (e) If S1 stays up and gets its term-3 entry onto a majority,
		// entry 2 commits with it...
		nw.mangle = nil
		nw.tick(1, 1)
		nw.stabilize()
		if got := nw.core(1).Status().Commit; got != 3 {
			t.Fatalf("(e) S1 commit %d, want 3", got)
		}
		// ...and S5 can never be elected to overwrite it: S3's log is
		// now more up to date than S5's.
		nw.heal()
		nw.isolate(1)
		nw.restart(5)
		for range 20 {
			nw.tick(5, 2*nw.nodes[5].cfg.ElectionTicks)
			nw.stabilize()
			if s := nw.core(5).Status(); s.Role == Leader {
				t.Fatalf("(e) S5 became leader in term %d with an out-of-date log", s.Term)
			}
		}
		return
	}

	// With the knob, S1 counts entry 2 as committed and applies "old".
	if s1.Commit != 2 || !slices.Equal(nw.appliedData(1), []string{"old"}) {
		t.Fatalf("(c, knob) S1 commit %d applied %q, want 2 and [old]", s1.Commit, nw.appliedData(1))
	}

	// (d) S1 crashes. S5 is elected by S2, S3 and S4 (its last term, 2,
	// beats their 1) and overwrites entry 2 everywhere: the entry S1
	// applied as committed is gone.
	nw.mangle = nil
	nw.heal()
	nw.isolate(1)
	nw.restart(5)
	nw.tickUntilLeader(5)
	nw.propose(5, "new")
	nw.stabilize()
	for _, id := range []uint64{2, 3, 4} {
		if got := nw.logTerms(id); got[1] != 2 {
			t.Fatalf("(d) S%d entry 2 has term %d, want S5's term 2", id, got[1])
		}
	}
	// Two servers applied different entries at index 2: S1 applied "old"
	// (term 1) and S3 applied S5's entry (term 2). That is the violation.
	e1, e3 := nw.nodes[1].applied[1], nw.nodes[3].applied[1]
	if e1.Index != 2 || e3.Index != 2 || e1.Term == e3.Term {
		t.Fatalf("(d) expected S1 and S3 to apply different entries at index 2, got %+v and %+v", e1, e3)
	}
}

// cutExcept leaves a only its link with b.
func cutExcept(nw *network, a, b uint64) {
	nw.isolate(a)
	delete(nw.cut, [2]uint64{a, b})
	delete(nw.cut, [2]uint64{b, a})
}
