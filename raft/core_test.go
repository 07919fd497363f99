package raft

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// Helpers for tests that drive a single core by hand.

func newTestCore(t testing.TB, id uint64, voters []uint64, opts ...configOpt) (*Core, *MemoryStorage) {
	t.Helper()
	return coreWithLog(t, id, voters, 0, nil, opts...)
}

// newElected returns node 1 just elected leader of {1,2,3} in term 1: its
// empty entry is durable but nobody acknowledged it yet.
func newElected(t testing.TB, opts ...configOpt) (*Core, *MemoryStorage) {
	t.Helper()
	c, st := newTestCore(t, 1, []uint64{1, 2, 3}, opts...)
	_ = c.Campaign()
	for _, id := range []uint64{2, 3} {
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: id, To: 1, Term: 1})
	}
	persist(t, c, st)
	if c.Status().Role != Leader {
		t.Fatal("setup: node 1 not elected")
	}
	return c, st
}

// persist handles one Ready like a runtime and returns it.
func persist(t testing.TB, c *Core, st *MemoryStorage) Ready {
	t.Helper()
	rd := c.Ready()
	save(t, st, rd)
	c.Advance(rd)
	return rd
}

// save persists what rd asks to.
func save(t testing.TB, st *MemoryStorage, rd Ready) {
	t.Helper()
	if !rd.Snapshot.IsEmpty() {
		if err := st.ApplySnapshot(rd.Snapshot); err != nil {
			t.Fatalf("apply snapshot: %v", err)
		}
	}
	if err := st.Append(rd.Entries); err != nil {
		t.Fatalf("append: %v", err)
	}
	if !rd.HardState.IsEmpty() {
		_ = st.SetHardState(rd.HardState)
	}
}

// sent persists c's pending Ready and returns all the messages it sends.
func sent(t testing.TB, c *Core, st *MemoryStorage) []raftpb.Message {
	t.Helper()
	if !c.HasReady() {
		return nil
	}
	rd := persist(t, c, st)
	return append(rd.Messages, rd.MessagesAfterPersist...)
}

func ofType(msgs []raftpb.Message, typ raftpb.MessageType) []raftpb.Message {
	var out []raftpb.Message
	for _, m := range msgs {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

func mustStep(t testing.TB, c *Core, m raftpb.Message) {
	t.Helper()
	if err := c.Step(m); err != nil {
		t.Fatalf("Step(%v): %v", m, err)
	}
}

// entries builds a log: terms[i] is the term of entry i+1.
func entries(terms ...uint64) []raftpb.Entry {
	ents := make([]raftpb.Entry, len(terms))
	for i, tm := range terms {
		ents[i] = raftpb.Entry{Index: uint64(i + 1), Term: tm}
	}
	return ents
}

// coreWithLog starts a core whose storage already holds a log and a term.
func coreWithLog(t testing.TB, id uint64, voters []uint64, term uint64, terms []uint64, opts ...configOpt) (*Core, *MemoryStorage) {
	t.Helper()
	st := NewMemoryStorage()
	if err := st.Append(entries(terms...)); err != nil {
		t.Fatal(err)
	}
	_ = st.SetHardState(raftpb.HardState{Term: term})
	cfg := testConfig(id, voters, st)
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, st
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := func() Config { return testConfig(1, []uint64{1, 2, 3}, NewMemoryStorage()) }
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"zero id", func(c *Config) { c.ID = 0 }},
		{"no storage", func(c *Config) { c.Storage = nil }},
		{"no rand", func(c *Config) { c.Rand = nil }},
		{"heartbeat not below election", func(c *Config) { c.HeartbeatTicks = c.ElectionTicks }},
		{"zero heartbeat", func(c *Config) { c.HeartbeatTicks = 0 }},
		{"zero msg size", func(c *Config) { c.MaxSizePerMsg = 0 }},
		{"zero inflight", func(c *Config) { c.MaxInflightMsgs = 0 }},
		{"inflight bytes below msg size", func(c *Config) { c.MaxInflightBytes = c.MaxSizePerMsg - 1 }},
		{"zero apply size", func(c *Config) { c.MaxCommittedSizePerReady = 0 }},
		{"self not a voter", func(c *Config) { c.Voters = []uint64{2, 3} }},
		{"duplicate voter", func(c *Config) { c.Voters = []uint64{1, 2, 2} }},
		{"voter zero", func(c *Config) { c.Voters = []uint64{1, 0} }},
		{"applied past commit", func(c *Config) { c.Applied = 5 }},
		{"commit past log", func(c *Config) {
			st := NewMemoryStorage()
			_ = st.SetHardState(raftpb.HardState{Term: 1, Commit: 3})
			c.Storage = st
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.mod(&cfg)
			if c, err := New(cfg); err == nil {
				t.Fatalf("New accepted the config and returned %v", c.Status())
			}
		})
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("New rejected a good config: %v", err)
	}
}

func TestMembershipFromStorageWins(t *testing.T) {
	st := NewMemoryStorage()
	st.SetConfState(raftpb.ConfState{Voters: []uint64{1, 2, 3, 4, 5}})
	cfg := testConfig(1, []uint64{1}, st)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Campaign()
	// With storage's five voters a single vote cannot win.
	if s := c.Status(); s.Role != Candidate {
		t.Fatalf("got %v, want candidate: storage's five voters should apply", s.Role)
	}
	if got := len(ofType(sent(t, c, st), raftpb.MsgVote)); got != 4 {
		t.Fatalf("sent %d vote requests, want 4", got)
	}
}

func TestSingleNodeCommitsOnlyAfterPersisting(t *testing.T) {
	c, st := newTestCore(t, 1, []uint64{1})
	_ = c.Campaign()
	if c.Status().Role != Leader {
		t.Fatalf("single node did not become leader")
	}
	if err := c.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.Entries) != 2 || len(rd.CommittedEntries) != 0 {
		t.Fatalf("first Ready: %d entries, %d committed; want 2 and 0 (nothing is durable yet)", len(rd.Entries), len(rd.CommittedEntries))
	}
	if c.Status().Commit != 0 {
		t.Fatalf("commit moved before the entries were persisted")
	}
	_ = st.Append(rd.Entries)
	_ = st.SetHardState(rd.HardState)
	c.Advance(rd)
	rd = persist(t, c, st)
	if len(rd.CommittedEntries) != 2 || string(rd.CommittedEntries[1].Data) != "x" {
		t.Fatalf("second Ready committed %v, want the empty entry and x", rd.CommittedEntries)
	}
	if s := c.Status(); s.Commit != 2 || s.Applied != 2 {
		t.Fatalf("commit/applied %d/%d, want 2/2", s.Commit, s.Applied)
	}
}

func TestProposalWithoutLeaderIsDropped(t *testing.T) {
	c, _ := newTestCore(t, 1, []uint64{1, 2, 3})
	if err := c.Propose([]byte("x")); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("follower without leader: got %v, want ErrProposalDropped", err)
	}
	_ = c.Campaign()
	if err := c.Propose([]byte("x")); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("candidate: got %v, want ErrProposalDropped", err)
	}
}

func TestFollowerForwardsProposalsBeforePersisting(t *testing.T) {
	c, st := newTestCore(t, 2, []uint64{1, 2, 3})
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 1})
	persist(t, c, st)
	if err := c.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rd := persist(t, c, st)
	if len(rd.Messages) != 1 || rd.Messages[0].Type != raftpb.MsgProp || rd.Messages[0].To != 1 || rd.Messages[0].From != 2 {
		t.Fatalf("got Messages %v, want one MsgProp 2->1", rd.Messages)
	}
}

func TestCampaignOnNonVoter(t *testing.T) {
	st := NewMemoryStorage()
	st.SetConfState(raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{3}})
	c, err := New(testConfig(3, nil, st))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Campaign(); !errors.Is(err, ErrNotVoter) {
		t.Fatalf("got %v, want ErrNotVoter", err)
	}
	// Nor does a learner time out into an election.
	for range 100 {
		c.Tick()
	}
	if s := c.Status(); s.Role != Follower || s.Term != 0 {
		t.Fatalf("learner is %v in term %d after ticking, want follower in term 0", s.Role, s.Term)
	}
}

func TestStaleMessagesAreIgnored(t *testing.T) {
	// Node 1 is a candidate in term 3 (it had seen term 2).
	for _, m := range []raftpb.Message{
		{Type: raftpb.MsgVoteResp, From: 2, To: 1, Term: 2},                   // a grant from an older election
		{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 2, Index: 1},          // from when someone else led
		{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1},              // older still
		{Type: raftpb.MsgVote, From: 3, To: 1, Term: 2, Index: 9, LogTerm: 2}, // an old candidate
	} {
		c, st := newTestCore(t, 1, []uint64{1, 2, 3})
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 2, To: 1, Term: 2})
		_ = c.Campaign()
		persist(t, c, st)
		before := c.Status()
		mustStep(t, c, m)
		if after := c.Status(); !reflect.DeepEqual(after, before) {
			t.Errorf("%v changed %+v into %+v", m, before, after)
		}
		if c.HasReady() {
			t.Errorf("%v produced %+v", m, c.Ready())
		}
	}
}

func TestDuplicateVotesCountOnce(t *testing.T) {
	c, _ := newTestCore(t, 1, []uint64{1, 2, 3, 4, 5})
	_ = c.Campaign()
	for range 3 {
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: 2, To: 1, Term: 1})
	}
	if c.Status().Role != Candidate {
		t.Fatal("three copies of one vote won an election of five")
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgVoteResp, From: 3, To: 1, Term: 1})
	if c.Status().Role != Leader {
		t.Fatal("three distinct votes of five did not win")
	}
}

func TestCommittedEntriesRespectSizeLimit(t *testing.T) {
	c, st := newTestCore(t, 1, []uint64{1}, func(cfg *Config) { cfg.MaxCommittedSizePerReady = 2 * (24 + 10) })
	_ = c.Campaign()
	for range 5 {
		_ = c.Propose(make([]byte, 10))
	}
	persist(t, c, st) // durable, then committed at Advance
	var sizes []int
	for c.HasReady() {
		if n := len(persist(t, c, st).CommittedEntries); n > 0 {
			sizes = append(sizes, n)
		}
	}
	// The empty entry (24 bytes) and one proposal (34) fit in 68; then
	// two proposals per Ready.
	if want := []int{2, 2, 2}; !slices.Equal(sizes, want) {
		t.Fatalf("committed entries per Ready %v, want %v", sizes, want)
	}
	if s := c.Status(); s.Applied != 6 {
		t.Fatalf("applied %d, want 6", s.Applied)
	}
}
