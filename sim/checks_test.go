package sim

import (
	"encoding/binary"
	"testing"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// harness is a checker over n empty disks, fed by hand.
type harness struct {
	t     *testing.T
	k     *checker
	disks []*raft.MemoryStorage
}

func newHarness(t *testing.T, n int) *harness {
	h := &harness{t: t}
	for range n {
		h.disks = append(h.disks, raft.NewMemoryStorage())
	}
	h.k = newChecker(h.disks)
	return h
}

func ents(terms ...uint64) []raftpb.Entry {
	var out []raftpb.Entry
	for i, t := range terms {
		out = append(out, raftpb.Entry{Index: uint64(i + 1), Term: t, Data: []byte{byte(t)}})
	}
	return out
}

// persist writes rd to node id's disk as the runtime would, then checks it.
func (h *harness) persist(id uint64, rd raft.Ready) {
	h.t.Helper()
	d := h.disks[id-1]
	if err := d.Append(rd.Entries); err != nil {
		h.t.Fatal(err)
	}
	if !rd.HardState.IsEmpty() {
		_ = d.SetHardState(rd.HardState)
	}
	h.k.persisted(id, &rd)
	h.k.endStep()
}

// wantRule asserts the checker has failed on rule, or on nothing if rule is "".
func (h *harness) wantRule(rule string) {
	h.t.Helper()
	switch {
	case rule == "" && h.k.err != nil:
		h.t.Fatalf("got violation %v, want none", h.k.err)
	case rule != "" && h.k.err == nil:
		h.t.Fatalf("got no violation, want one of %s", rule)
	case rule != "" && h.k.err.Rule != rule:
		h.t.Fatalf("got violation %v, want one of %s", h.k.err, rule)
	}
}

func TestCheckerElectionSafety(t *testing.T) {
	h := newHarness(t, 3)
	h.k.observe(1, raft.Status{ID: 1, Term: 2, Role: raft.Leader, Config: founders})
	h.k.observe(1, raft.Status{ID: 1, Term: 3, Role: raft.Follower})
	h.k.observe(2, raft.Status{ID: 2, Term: 3, Role: raft.Leader, Config: founders})
	h.wantRule("")
	// Node 3 never shows as leader of term 2, but it sends a heartbeat.
	h.k.ready(3, 3, &raft.Ready{Messages: []raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 3, To: 1, Term: 2}}})
	h.wantRule(RuleElectionSafety)

	// A follower that follows someone other than its term's leader.
	h = newHarness(t, 3)
	h.k.observe(1, raft.Status{ID: 1, Term: 2, Role: raft.Leader, Lead: 1, Config: founders})
	h.k.observe(2, raft.Status{ID: 2, Term: 2, Role: raft.Follower, Lead: 3})
	h.wantRule(RuleElectionSafety)
}

func TestCheckerMonotonic(t *testing.T) {
	h := newHarness(t, 1)
	h.k.observe(1, raft.Status{ID: 1, Term: 3, Commit: 4})
	h.k.observe(1, raft.Status{ID: 1, Term: 3, Commit: 3})
	h.wantRule(RuleMonotonic)

	h = newHarness(t, 1)
	h.persist(1, raft.Ready{Entries: ents(1, 1), HardState: raftpb.HardState{Term: 2, Commit: 2}, MustSync: true})
	// A restart may reload what was persisted, never less.
	h.k.restarted(1, 0, raft.Status{ID: 1, Term: 2, Commit: 1})
	h.wantRule(RuleMonotonic)
}

func TestCheckerVoteStability(t *testing.T) {
	h := newHarness(t, 3)
	h.persist(1, raft.Ready{HardState: raftpb.HardState{Term: 2, Vote: 2}, MustSync: true})
	h.k.restarted(1, 0, raft.Status{ID: 1, Term: 2, Vote: 0})
	h.wantRule(RuleVote)

	h = newHarness(t, 3)
	h.persist(1, raft.Ready{HardState: raftpb.HardState{Term: 2, Vote: 2}, MustSync: true})
	h.persist(1, raft.Ready{HardState: raftpb.HardState{Term: 2, Vote: 3}, MustSync: true})
	h.wantRule(RuleVote)
}

func TestCheckerLogMatching(t *testing.T) {
	h := newHarness(t, 2)
	h.persist(1, raft.Ready{Entries: ents(1, 2), MustSync: true})
	other := ents(1, 2)
	other[1].Data = []byte("different")
	h.persist(2, raft.Ready{Entries: other, MustSync: true})
	h.wantRule(RuleLogMatching)
}

func TestCheckerLeaderCompleteness(t *testing.T) {
	h := newHarness(t, 3)
	// The Raft paper's Figure 8: entry 2 of term 1 is committed in term 3
	// (node 1 persisted commit 2 while in term 3).
	h.persist(1, raft.Ready{Entries: ents(1, 1), HardState: raftpb.HardState{Term: 3, Commit: 2}, MustSync: true})
	// Node 2 still holds the stale entry 2 of term 2 from a leader that
	// never committed it: allowed, it will be overwritten.
	h.persist(2, raft.Ready{Entries: ents(1, 2), MustSync: true})
	h.wantRule("")
	// But an entry of term 4 after it means the leader of term 4 lacked
	// an entry committed in term 3.
	h.persist(2, raft.Ready{Entries: ents(1, 2, 4)[2:], MustSync: true})
	h.wantRule(RuleLeaderCompleteness)
}

func TestCheckerStateMachineSafety(t *testing.T) {
	h := newHarness(t, 2)
	h.persist(1, raft.Ready{Entries: ents(1, 1), HardState: raftpb.HardState{Term: 1, Commit: 2}, MustSync: true})
	h.persist(2, raft.Ready{Entries: ents(1, 2), HardState: raftpb.HardState{Term: 2, Commit: 2}, MustSync: true})
	h.wantRule(RuleStateMachine)

	h = newHarness(t, 1)
	h.persist(1, raft.Ready{Entries: ents(1, 1), HardState: raftpb.HardState{Term: 1, Commit: 2}, MustSync: true})
	e := ents(1, 1)
	h.k.applied(1, &e[1]) // skips index 1
	h.wantRule(RuleStateMachine)
}

func TestCheckerDurability(t *testing.T) {
	h := newHarness(t, 1)
	h.persist(1, raft.Ready{Entries: ents(1, 1), HardState: raftpb.HardState{Term: 1, Commit: 1}, MustSync: true})
	e := ents(1, 1)
	h.k.applied(1, &e[0])
	h.wantRule("")
	h.k.applied(1, &e[1]) // not committed on this node's disk
	h.wantRule(RuleDurability)
}

func TestCheckerReadIndex(t *testing.T) {
	h := newHarness(t, 1)
	h.k.observe(1, raft.Status{ID: 1, Term: 1, Commit: 5, Role: raft.Leader, Config: founders})
	h.k.readIssued(7)
	h.k.readAnswered(1, raft.ReadState{Index: 5, Context: binary.BigEndian.AppendUint64(nil, 7)})
	h.wantRule("")
	h.k.readAnswered(1, raft.ReadState{Index: 4, Context: binary.BigEndian.AppendUint64(nil, 7)})
	h.wantRule(RuleReadIndex)
}

func TestCheckerReadyContract(t *testing.T) {
	h := newHarness(t, 3)
	h.k.ready(1, 3, &raft.Ready{Messages: []raftpb.Message{{Type: raftpb.MsgVoteResp, From: 1, To: 2, Term: 1}}})
	h.wantRule(RuleContract)

	h = newHarness(t, 3)
	h.k.ready(1, 3, &raft.Ready{Entries: ents(1), MustSync: false})
	h.wantRule(RuleContract)
}

// founders is the configuration of the harness's three nodes.
var founders = raftpb.ConfState{Voters: []uint64{1, 2, 3}}

func TestCheckerMembership(t *testing.T) {
	// Only a voter of its own configuration campaigns or leads.
	h := newHarness(t, 4)
	h.k.observe(4, raft.Status{ID: 4, Term: 2, Role: raft.Candidate, Config: raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}})
	h.wantRule(RuleMembership)
	h = newHarness(t, 4)
	joint := raftpb.ConfState{Voters: []uint64{2, 3, 4}, VotersOutgoing: []uint64{1, 2, 3}}
	h.k.observe(1, raft.Status{ID: 1, Term: 2, Role: raft.Leader, Config: joint})
	h.wantRule("") // a voter of the configuration being left still leads

	// A node that knows it was removed votes for nobody...
	h = newHarness(t, 3)
	left := raftpb.ConfState{Voters: []uint64{1, 2}}
	h.k.observe(3, raft.Status{ID: 3, Term: 2, Config: left, Removed: true})
	h.k.observe(3, raft.Status{ID: 3, Term: 3, Vote: 1, Config: left, Removed: true})
	h.wantRule(RuleMembership)
	// ... and grants no pre-vote in a Ready it made knowing it.
	h = newHarness(t, 3)
	h.k.observe(3, raft.Status{ID: 3, Term: 2, Config: left, Removed: true})
	grant := raft.Ready{MessagesAfterPersist: []raftpb.Message{{Type: raftpb.MsgPreVoteResp, From: 3, To: 1, Term: 3}}}
	h.k.ready(3, 3, &grant) // made (perhaps) before it knew: not checked
	h.wantRule("")
	h.k.ready(3, 3, &grant)
	h.wantRule(RuleMembership)
	// Added back, it takes part again.
	h = newHarness(t, 3)
	h.k.observe(3, raft.Status{ID: 3, Term: 2, Config: left, Removed: true})
	h.k.observe(3, raft.Status{ID: 3, Term: 2, Config: founders})
	h.k.observe(3, raft.Status{ID: 3, Term: 3, Vote: 1, Config: founders})
	h.wantRule("")
}

func TestCheckerConfigurationAgreement(t *testing.T) {
	h := newHarness(t, 3)
	next := raftpb.ConfState{Voters: []uint64{1, 2}}
	h.k.confApplied(1, 5, founders, confOutcome{conf: next}, raft.Status{Config: next})
	h.k.confApplied(2, 5, founders, confOutcome{conf: next}, raft.Status{Config: next})
	h.wantRule("")
	if got := h.k.current(); !got.Equal(next) {
		t.Fatalf("configuration in effect: got %v, want %v", got, next)
	}
	// Node 3 applies its own removal without saying so.
	h.k.confApplied(3, 5, founders, confOutcome{conf: next}, raft.Status{Config: next})
	h.wantRule(RuleMembership)

	h = newHarness(t, 3)
	h.k.confApplied(1, 5, founders, confOutcome{conf: next}, raft.Status{Config: next})
	h.k.confApplied(2, 5, founders, confOutcome{conf: founders, invalid: true}, raft.Status{Config: founders})
	h.wantRule(RuleMembership)
}
