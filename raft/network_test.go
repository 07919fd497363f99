package raft

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// The test network: a few cores with MemoryStorage, a message queue, and a
// runtime loop that persists each Ready before sending what must wait for
// it. The full fault-injecting simulator lives in package sim; this is just
// enough to tell the paper's stories.

type testNode struct {
	core    *Core
	storage *MemoryStorage
	cfg     Config
	applied []raftpb.Entry
	reads   []ReadState
	// confs are the configurations the node's state machine recorded, in
	// order: each ApplyConfChange result and each snapshot's; confErrs the
	// changes ApplyConfChange refused.
	confs    []raftpb.ConfState
	confErrs []error
	// holdApply keeps committed entries from being applied (and reported
	// with AppliedTo) until it is cleared; they wait in held.
	holdApply bool
	held      []raftpb.Entry
}

type network struct {
	t     testing.TB
	nodes map[uint64]*testNode
	ids   []uint64
	// queue holds messages sent and not yet delivered, in send order.
	queue []raftpb.Message
	// cut[[2]uint64{from, to}] drops messages on that one-way link.
	cut map[[2]uint64]bool
	// mangle, if set, may rewrite or drop (ok=false) each message before
	// delivery: the scenario tests use it to lose or delay parts of appends.
	mangle func(m raftpb.Message) (raftpb.Message, bool)
	// trace records every delivered message, for round-trip assertions.
	trace []raftpb.Message
}

type configOpt func(*Config)

func testConfig(id uint64, voters []uint64, st Storage) Config {
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.Voters = voters
	cfg.Storage = st
	cfg.Rand = newRand(id)
	cfg.PreVote = false
	cfg.CheckQuorum = false
	return cfg
}

func withPreVote(c *Config)     { c.PreVote = true }
func withCheckQuorum(c *Config) { c.CheckQuorum = true }

// newNetwork starts n nodes with ids 1..n and empty storage.
func newNetwork(t testing.TB, n int, opts ...configOpt) *network {
	t.Helper()
	logs := make([][]uint64, n)
	return newNetworkWithLogs(t, 0, logs, opts...)
}

// newNetworkWithLogs starts len(logs) nodes with ids 1..n; node i+1's
// storage holds entries with terms logs[i] and hard state term.
func newNetworkWithLogs(t testing.TB, term uint64, logs [][]uint64, opts ...configOpt) *network {
	t.Helper()
	nw := &network{t: t, nodes: map[uint64]*testNode{}, cut: map[[2]uint64]bool{}}
	for i := range logs {
		nw.ids = append(nw.ids, uint64(i+1))
	}
	for i, id := range nw.ids {
		st := NewMemoryStorage()
		if err := st.Append(entries(logs[i]...)); err != nil {
			t.Fatal(err)
		}
		_ = st.SetHardState(raftpb.HardState{Term: term})
		cfg := testConfig(id, nw.ids, st)
		for _, o := range opts {
			o(&cfg)
		}
		nw.start(id, cfg, st)
	}
	return nw
}

func (nw *network) start(id uint64, cfg Config, st *MemoryStorage) {
	nw.t.Helper()
	c, err := New(cfg)
	if err != nil {
		nw.t.Fatalf("New(%d): %v", id, err)
	}
	nw.nodes[id] = &testNode{core: c, storage: st, cfg: cfg}
}

// restart replaces node id by a fresh core on the same storage: only what
// was persisted survives.
func (nw *network) restart(id uint64) {
	nw.t.Helper()
	n := nw.nodes[id]
	n.cfg.Applied = 0
	nw.start(id, n.cfg, n.storage)
}

func (nw *network) core(id uint64) *Core { return nw.nodes[id].core }

// process runs one Ready of node id, the way a runtime would.
func (nw *network) process(id uint64) bool {
	nw.t.Helper()
	n := nw.nodes[id]
	if !n.core.HasReady() {
		return false
	}
	// Messages wait in the queue until deliver, so queueing them all after
	// persisting keeps both kinds in the order a runtime sends them.
	rd := n.core.Ready()
	save(nw.t, n.storage, rd)
	for _, m := range slices.Concat(rd.Messages, rd.MessagesAfterPersist) {
		// What a real transport holds every message to.
		if m.From != id {
			nw.t.Fatalf("node %d sends %v under another name", id, m)
		}
	}
	nw.queue = append(nw.queue, rd.Messages...)
	nw.queue = append(nw.queue, rd.MessagesAfterPersist...)
	if !rd.Snapshot.IsEmpty() {
		n.confs = append(n.confs, rd.Snapshot.Metadata.ConfState)
		n.core.AppliedTo(rd.Snapshot.Metadata.Index)
	}
	n.held = append(n.held, rd.CommittedEntries...)
	nw.apply(id)
	n.reads = append(n.reads, rd.ReadStates...)
	n.core.Advance(rd)
	return true
}

// apply applies node id's committed entries (unless held), conf changes
// included, and reports them applied, as a runtime's state machine would.
func (nw *network) apply(id uint64) {
	n := nw.nodes[id]
	if n.holdApply || len(n.held) == 0 {
		return
	}
	for _, e := range n.held {
		n.applied = append(n.applied, e)
		if e.Type != raftpb.EntryConfChange {
			continue
		}
		cc, err := raftpb.UnmarshalConfChange(e.Data)
		if err != nil {
			continue
		}
		cs, err := n.core.ApplyConfChange(e.Index, cc)
		n.confs = append(n.confs, cs)
		if err != nil {
			n.confErrs = append(n.confErrs, err)
		}
	}
	n.core.AppliedTo(n.held[len(n.held)-1].Index)
	n.held = nil
}

// deliver steps every queued message (dropping those on cut links) and
// returns how many it delivered.
func (nw *network) deliver() int {
	nw.t.Helper()
	q := nw.queue
	nw.queue = nil
	n := 0
	for _, m := range q {
		if nw.cut[[2]uint64{m.From, m.To}] || nw.nodes[m.To] == nil {
			continue
		}
		if nw.mangle != nil {
			var ok bool
			if m, ok = nw.mangle(m); !ok {
				continue
			}
		}
		nw.trace = append(nw.trace, m)
		if err := nw.nodes[m.To].core.Step(m); err != nil && err != ErrProposalDropped {
			nw.t.Fatalf("step %v: %v", m, err)
		}
		n++
	}
	return n
}

// stabilize runs Readys and deliveries until nothing moves.
func (nw *network) stabilize() {
	nw.t.Helper()
	for range 10000 {
		moved := false
		for _, id := range nw.ids {
			for nw.process(id) {
				moved = true
			}
		}
		if nw.deliver() > 0 {
			moved = true
		}
		if !moved {
			return
		}
	}
	nw.t.Fatal("network did not stabilize")
}

// isolate cuts node id off in both directions; heal restores all links.
func (nw *network) isolate(id uint64) {
	for _, o := range nw.ids {
		if o != id {
			nw.cut[[2]uint64{id, o}] = true
			nw.cut[[2]uint64{o, id}] = true
		}
	}
}

func (nw *network) heal() { clear(nw.cut) }

func (nw *network) tick(id uint64, n int) {
	for range n {
		nw.core(id).Tick()
	}
}

// tickUntilLeader ticks the given nodes one tick at a time, stabilizing in
// between, until one of them leads; it returns that one.
func (nw *network) tickUntilLeader(ids ...uint64) uint64 {
	nw.t.Helper()
	for range 100 * len(ids) {
		for _, id := range ids {
			if nw.core(id).Status().Role == Leader {
				return id
			}
			nw.tick(id, 1)
		}
		nw.stabilize()
	}
	nw.t.Fatalf("none of %v became leader", ids)
	return 0
}

// elect makes id leader by campaigning and stabilizing.
func (nw *network) elect(id uint64) {
	nw.t.Helper()
	if err := nw.core(id).Campaign(); err != nil {
		nw.t.Fatalf("campaign %d: %v", id, err)
	}
	nw.stabilize()
	if s := nw.core(id).Status(); s.Role != Leader {
		nw.t.Fatalf("node %d is %v after campaigning, want leader", id, s.Role)
	}
}

func (nw *network) propose(id uint64, data string) {
	nw.t.Helper()
	if err := nw.core(id).Propose([]byte(data)); err != nil {
		nw.t.Fatalf("propose on %d: %v", id, err)
	}
}

// appliedData returns the non-empty commands node id applied, in order
// (conf changes aside).
func (nw *network) appliedData(id uint64) []string {
	var out []string
	for _, e := range nw.nodes[id].applied {
		if len(e.Data) > 0 && e.Type == raftpb.EntryNormal {
			out = append(out, string(e.Data))
		}
	}
	return out
}

// logTerms returns the terms of node id's stored entries from index 1.
func (nw *network) logTerms(id uint64) []uint64 {
	st := nw.nodes[id].storage
	var terms []uint64
	for _, e := range st.ents[1:] {
		terms = append(terms, e.Term)
	}
	return terms
}

func TestNetworkSmoke(t *testing.T) {
	nw := newNetwork(t, 3)
	nw.elect(1)
	nw.propose(1, "a")
	nw.propose(2, "b")
	nw.stabilize()
	for _, id := range nw.ids {
		if got, want := nw.appliedData(id), []string{"a", "b"}; !slices.Equal(got, want) {
			t.Errorf("node %d applied %q, want %q", id, got, want)
		}
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 42)) }
