package raft

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func TestFollowerAppendConsistencyCheck(t *testing.T) {
	// The follower's log: terms 1, 2, 2 in term 2.
	for _, tc := range []struct {
		name           string
		prev, prevTerm uint64
		ents           []raftpb.Entry
		commit         uint64
		skipTrunc      bool
		wantReject     bool
		wantIndex      uint64
		wantLog        []uint64
		wantCommit     uint64
	}{
		{"prev matches, append", 3, 2, []raftpb.Entry{{Index: 4, Term: 3}}, 4, false, false, 4, []uint64{1, 2, 2, 3}, 4},
		{"prev term differs", 3, 3, []raftpb.Entry{{Index: 4, Term: 3}}, 0, false, true, 3, []uint64{1, 2, 2}, 0},
		{"prev past end", 5, 3, nil, 0, false, true, 5, []uint64{1, 2, 2}, 0},
		{"conflict truncates", 1, 1, []raftpb.Entry{{Index: 2, Term: 3}}, 0, false, false, 2, []uint64{1, 3}, 0},
		{"duplicate is a no-op", 1, 1, []raftpb.Entry{{Index: 2, Term: 2}}, 0, false, false, 2, []uint64{1, 2, 2}, 0},
		{"commit limited to last new entry", 1, 1, []raftpb.Entry{{Index: 2, Term: 2}}, 3, false, false, 2, []uint64{1, 2, 2}, 2},
		{"knob keeps conflicting entries", 1, 1, []raftpb.Entry{{Index: 2, Term: 3}, {Index: 3, Term: 3}, {Index: 4, Term: 3}}, 0, true, false, 4, []uint64{1, 2, 2, 3}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st := coreWithLog(t, 2, []uint64{1, 2, 3}, 2, []uint64{1, 2, 2}, func(cfg *Config) { cfg.Knobs.SkipConflictTruncation = tc.skipTrunc })
			mustStep(t, c, raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, Index: tc.prev, LogTerm: tc.prevTerm, Entries: tc.ents, Commit: tc.commit})
			rd := persist(t, c, st)
			if len(rd.MessagesAfterPersist) != 1 {
				t.Fatalf("got %v, want one response after persisting", rd.MessagesAfterPersist)
			}
			r := rd.MessagesAfterPersist[0]
			if r.Type != raftpb.MsgAppResp || r.Reject != tc.wantReject || r.Index != tc.wantIndex {
				t.Fatalf("got %v, want MsgAppResp reject=%v index=%d", r, tc.wantReject, tc.wantIndex)
			}
			var terms []uint64
			for _, e := range st.ents[1:] {
				terms = append(terms, e.Term)
			}
			if !slices.Equal(terms, tc.wantLog) {
				t.Fatalf("log terms %v, want %v", terms, tc.wantLog)
			}
			if got := c.Status().Commit; got != tc.wantCommit {
				t.Fatalf("commit %d, want %d", got, tc.wantCommit)
			}
		})
	}
}

func TestRejectHint(t *testing.T) {
	// Follower log terms 1 1 1 4 4 5 5 6 6 6 (figure 7 (c)-like).
	follower := []uint64{1, 1, 1, 4, 4, 5, 5, 6, 6, 6}
	for _, tc := range []struct {
		name               string
		prev, prevTerm     uint64
		wantHint, wantTerm uint64
	}{
		{"past the end", 12, 8, 10, 6},
		{"leader term above all ours", 10, 7, 10, 6},
		{"skip a whole term", 7, 4, 5, 4},
		{"down to the start", 3, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st := coreWithLog(t, 2, []uint64{1, 2, 3}, 6, follower)
			mustStep(t, c, raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 8, Index: tc.prev, LogTerm: tc.prevTerm})
			r := ofType(sent(t, c, st), raftpb.MsgAppResp)[0]
			if !r.Reject || r.RejectHint != tc.wantHint || r.HintTerm != tc.wantTerm {
				t.Fatalf("got %v, want reject hint=%d/%d", r, tc.wantHint, tc.wantTerm)
			}
		})
	}
}

func TestInvalidAppendIsRejectedWithoutChange(t *testing.T) {
	bad := []raftpb.Message{
		{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, Index: 1, LogTerm: 1, Entries: []raftpb.Entry{{Index: 3, Term: 3}}},          // gap
		{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, Index: 1, LogTerm: 1, Entries: []raftpb.Entry{{Index: 2, Term: 4}}},          // entry from the future
		{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, Index: 1, LogTerm: 2, Entries: []raftpb.Entry{{Index: 2, Term: 1}}},          // term goes down
		{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, Index: ^uint64(0), LogTerm: 1, Entries: []raftpb.Entry{{Index: 0, Term: 3}}}, // index wraps
		{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, Index: 1, LogTerm: 1, Entries: []raftpb.Entry{{Index: 2, Term: 3, Type: 9}}}, // unknown entry type
		{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 3},                            // no snapshot
		{Type: raftpb.MsgVote, From: 1, To: 2, Term: 3, LogTerm: 4},                // last term from the future
		{Type: raftpb.MsgHeartbeat, From: 1, To: 2},                                // no term
		{Type: raftpb.MsgHeartbeat, From: 0, To: 2, Term: 3},                       // no sender
		{Type: raftpb.MsgHeartbeat, From: 2, To: 2, Term: 3},                       // from ourselves
		{Type: raftpb.MsgHeartbeat, From: 1, To: 7, Term: 3},                       // not for us
		{Type: raftpb.MessageType(99), From: 1, To: 2, Term: 3},                    // unknown type
		{Type: raftpb.MsgUnreachable, From: 1, To: 2, Term: 3},                     // local type from a peer
		{Type: raftpb.MsgProp, From: 1, To: 2, Entries: []raftpb.Entry{{Type: 9}}}, // unknown entry type
		{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 3, Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{ // impossible configuration
			Index: 9, Term: 3, ConfState: raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{2}}}}},
	}
	for _, m := range bad {
		c, st := coreWithLog(t, 2, []uint64{1, 2, 3}, 2, []uint64{1, 2})
		before := c.Status()
		err := c.Step(m)
		if err == nil {
			t.Errorf("Step(%v) accepted a malformed message", m)
			continue
		}
		if !errors.Is(err, ErrInvalidMessage) && !errors.Is(err, ErrStepLocalMsg) {
			t.Errorf("Step(%v) = %v, want ErrInvalidMessage or ErrStepLocalMsg", m, err)
		}
		if after := c.Status(); after.Term != before.Term || after.Lead != before.Lead || c.HasReady() {
			t.Errorf("Step(%v) changed state: %+v -> %+v (HasReady %v)", m, before, after, c.HasReady())
		}
		_ = st
	}
}

// leaderOf3 returns node 1 as leader of {1,2,3} in term 1 with the given
// log already replicated everywhere (by its own storage), and progress for
// 2 and 3 in StateReplicate.
func leaderOf3(t *testing.T, opts ...configOpt) (*Core, *MemoryStorage) {
	t.Helper()
	c, st := newElected(t, opts...)
	for _, id := range []uint64{2, 3} {
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: id, To: 1, Term: 1, Index: 1})
	}
	persist(t, c, st)
	if s := c.Status(); s.Role != Leader || s.Commit != 1 || s.Progress[2].State != StateReplicate {
		t.Fatalf("setup: got %+v", s)
	}
	return c, st
}

func TestProposalsBetweenReadysShareOneAppend(t *testing.T) {
	c, st := leaderOf3(t)
	for range 10 {
		if err := c.Propose([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	rd := persist(t, c, st)
	apps := ofType(rd.Messages, raftpb.MsgApp)
	if len(rd.Entries) != 10 || len(apps) != 2 || len(apps[0].Entries) != 10 {
		t.Fatalf("got %d entries and appends %v, want 10 entries in one MsgApp per follower", len(rd.Entries), apps)
	}
}

func TestLeaderDoesNotCommitWithoutDurableQuorum(t *testing.T) {
	c, st := leaderOf3(t)
	_ = c.Propose([]byte("x"))
	rd := c.Ready()
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 2})
	if got := c.Status().Commit; got != 1 {
		t.Fatalf("commit %d with only one durable copy (node 2) of three, want 1", got)
	}
	_ = st.Append(rd.Entries)
	c.Advance(rd)
	if got := c.Status().Commit; got != 2 {
		t.Fatalf("after the leader's own write, commit %d, want 2", got)
	}
	// The followers hear the new commit index at the next Ready.
	apps := ofType(c.Ready().Messages, raftpb.MsgApp)
	if len(apps) != 2 || apps[0].Commit != 2 {
		t.Fatalf("got %v, want commit 2 sent to both followers", apps)
	}
}

func TestHeartbeatCommitIsCappedByMatch(t *testing.T) {
	c, st := leaderOf3(t)
	_ = c.Propose([]byte("x"))
	persist(t, c, st)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 2})
	persist(t, c, st)
	c.Tick()
	for _, m := range ofType(sent(t, c, st), raftpb.MsgHeartbeat) {
		want := map[uint64]uint64{2: 2, 3: 1}[m.To]
		if m.Commit != want {
			t.Errorf("heartbeat to %d carries commit %d, want %d", m.To, m.Commit, want)
		}
	}
}

func TestFlowControl(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxMsgs     int
		maxBytes    uint64
		maxSize     uint64
		proposals   int
		perReady    bool // a Ready after each proposal, or one for all
		dataLen     int
		wantApps    int
		wantEntries int // in the first append
	}{
		// Entry.Size is len(Data)+24: 100-byte proposals are 124 bytes.
		{"window by count", 2, 0, 124, 10, true, 100, 2, 1},
		{"message size splits a batch", 100, 0, 3 * 124, 10, false, 100, 4, 3},
		{"window by bytes", 100, 2 * 124, 124, 10, true, 100, 2, 1},
		{"window by count in one batch", 2, 0, 124, 10, false, 100, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, st := leaderOf3(t, func(cfg *Config) {
				cfg.MaxInflightMsgs = tc.maxMsgs
				cfg.MaxInflightBytes = tc.maxBytes
				cfg.MaxSizePerMsg = tc.maxSize
			})
			var apps []raftpb.Message
			collect := func() {
				for _, m := range ofType(sent(t, c, st), raftpb.MsgApp) {
					if m.To == 2 {
						apps = append(apps, m)
					}
				}
			}
			for range tc.proposals {
				_ = c.Propose(make([]byte, tc.dataLen))
				if tc.perReady {
					collect()
				}
			}
			collect()
			if len(apps) != tc.wantApps || len(apps[0].Entries) != tc.wantEntries {
				t.Fatalf("sent %d appends to node 2 (first with %d entries), want %d (first with %d)", len(apps), len(apps[0].Entries), tc.wantApps, tc.wantEntries)
			}
			if s := c.Status().Progress[2]; s.Inflight != len(apps) {
				t.Fatalf("progress says %d inflight, want %d", s.Inflight, len(apps))
			}
			// Acknowledging everything sent opens the window again.
			last := apps[len(apps)-1]
			mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: last.Index + uint64(len(last.Entries))})
			more := ofType(sent(t, c, st), raftpb.MsgApp)
			if len(more) == 0 || more[0].To != 2 || more[0].Index != last.Index+uint64(len(last.Entries)) {
				t.Fatalf("after the ack got %v, want the next appends to node 2", more)
			}
		})
	}
}

func TestProbeSendsOneAppendAtATime(t *testing.T) {
	c, st := newElected(t)
	for range 5 {
		_ = c.Propose([]byte("x"))
		if apps := ofType(sent(t, c, st), raftpb.MsgApp); len(apps) != 0 {
			t.Fatalf("probing leader sent %v before hearing back", apps)
		}
	}
	// A heartbeat answer unpauses the probe.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1})
	apps := ofType(sent(t, c, st), raftpb.MsgApp)
	if len(apps) != 1 || apps[0].To != 2 {
		t.Fatalf("got %v, want one probe to 2", apps)
	}
}

func TestStuckWindowRecoversOnHeartbeat(t *testing.T) {
	c, st := leaderOf3(t, func(cfg *Config) { cfg.MaxInflightMsgs = 1 })
	_ = c.Propose([]byte("lost"))
	_ = sent(t, c, st) // the append to node 2 is lost
	_ = c.Propose([]byte("y"))
	if apps := ofType(sent(t, c, st), raftpb.MsgApp); len(apps) != 0 {
		t.Fatalf("window of 1 is full, yet sent %v", apps)
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1})
	apps := ofType(sent(t, c, st), raftpb.MsgApp)
	if len(apps) != 1 || apps[0].To != 2 {
		t.Fatalf("after a heartbeat answer got %v, want an append to 2", apps)
	}
}

func TestUnreachableFallsBackToProbe(t *testing.T) {
	c, _ := leaderOf3(t)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgUnreachable, From: 2, To: 1})
	if got := c.Status().Progress[2].State; got != StateProbe {
		t.Fatalf("state %v after MsgUnreachable, want probe", got)
	}
	// A report about a peer outside the configuration (one just removed)
	// is routine: ignored without an error.
	before := c.Status()
	if err := c.Step(raftpb.Message{Type: raftpb.MsgUnreachable, From: 9, To: 1}); err != nil || !reflect.DeepEqual(c.Status(), before) {
		t.Fatalf("report about unknown peer: %v, status %+v -> %+v", err, before, c.Status())
	}
}

func TestRejectionRewindsReplicateToProbe(t *testing.T) {
	c, st := leaderOf3(t)
	_ = c.Propose([]byte("a"))
	_ = sent(t, c, st) // lost on the way to node 2
	_ = c.Propose([]byte("b"))
	_ = sent(t, c, st)
	// Node 2 rejects the second append: it lacks entry 2.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 2, Reject: true, RejectHint: 1, HintTerm: 1})
	if pr := c.Status().Progress[2]; pr.State != StateProbe {
		t.Fatalf("got %v, want probe after a rejection", pr.State)
	}
	apps := ofType(sent(t, c, st), raftpb.MsgApp)
	if len(apps) != 1 || apps[0].To != 2 || apps[0].Index != 1 || len(apps[0].Entries) != 2 {
		t.Fatalf("got %v, want the two entries after index 1", apps)
	}
	// A stale rejection (of an append already superseded) changes nothing.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 2, Reject: true})
	if apps := ofType(sent(t, c, st), raftpb.MsgApp); len(apps) != 0 {
		t.Fatalf("stale rejection triggered %v", apps)
	}
}

func TestAckBeyondLogIsRejected(t *testing.T) {
	c, _ := leaderOf3(t)
	if err := c.Step(raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 99}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("got %v, want ErrInvalidMessage", err)
	}
	if got := c.Status().Progress[2].Match; got != 1 {
		t.Fatalf("match moved to %d", got)
	}
}
