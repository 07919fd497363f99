package sim

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/raft/readydrive"
)

// This file is a simulated node: its core, disk and state machine, and the
// runtime around them. The runtime handles Readies with readydrive, the
// driver the real node runtime runs, so the order it checks is the order
// production uses; only the side effects (a MemoryStorage for a disk, the
// simulated network, the StateMachine) are simulated.

// node is one simulated server: a core, the disk it persists to and the
// state machine it applies to.
type node struct {
	id   uint64
	core *raft.Core // nil while crashed
	// disk is what the node has persisted; it is all that survives a crash.
	disk    *raft.MemoryStorage
	sm      StateMachine
	applied uint64 // last index sm has applied
	// conf is the configuration as of applied, which snapshots of sm
	// carry; it survives a crash with sm.
	conf raftpb.ConfState
	// born: the node has started once (a joiner's slot is empty until a
	// change adds it).
	born bool
	// inc counts incarnations: a crash bumps it so that events meant for
	// the previous one (ticks, a pending Ready) are dropped.
	inc    uint64
	period int64 // this node's clock: time units per tick
	// readyQueued: a Ready event is scheduled; crashArmed: the next Ready
	// will be interrupted by a crash.
	readyQueued, crashArmed bool
	pausedUntil             int64 // the node is frozen until then
	// drive carries out the core's Readies (nil while crashed). Until a
	// Ready's Advance the core takes inputs but no other Ready is taken.
	drive *readydrive.Driver
	// readySync: the Ready in hand is carried out in one step; otherwise
	// Persist and Apply are later events. crashAt: the phase a crash
	// strikes just before, in the Ready in hand (Idle: none).
	readySync bool
	crashAt   readydrive.Phase
	role      raft.Role // last observed, for the trace
	term      uint64
}

// ---- nodes ----

// start boots a node from its disk: at the beginning, or after a crash.
func (c *cluster) start(n *node) {
	restart := n.inc > 0
	if restart {
		// A state machine either persists itself (and survives with
		// what it applied) or is rebuilt from the latest snapshot.
		if c.rng.IntN(2) == 0 {
			n.sm, n.applied, n.conf = c.opts.NewStateMachine(), 0, raftpb.ConfState{}
		}
		snap, _ := n.disk.Snapshot()
		if snap.Metadata.Index > n.applied {
			if err := n.sm.Restore(snap.Data); err != nil {
				c.check.failf(RuleDurability, "node %d cannot restore its snapshot at %d: %v", n.id, snap.Metadata.Index, err)
				return
			}
			n.applied, n.conf = snap.Metadata.Index, snap.Metadata.ConfState
		}
	}
	cfg := c.opts.Raft
	cfg.ID, cfg.Applied = n.id, n.applied
	disk := &busyDisk{MemoryStorage: n.disk, c: c}
	cfg.Storage = disk
	cfg.Rand = rand.New(rand.NewPCG(c.rng.Uint64(), c.rng.Uint64()))
	core, err := raft.New(cfg)
	if err != nil {
		c.check.failf(RuleContract, "node %d cannot start from its disk: %v", n.id, err)
		return
	}
	disk.busy = c.opts.Mix.CompactEvery > 0
	n.core = core
	n.drive = readydrive.New(core, nodeRuntime{c, n})
	st := core.Status()
	if restart {
		hs, _, _ := n.disk.InitialState()
		c.note(n.id, "RESTART with term %d vote %d commit %d, state machine at %d", hs.Term, hs.Vote, hs.Commit, n.applied)
		c.check.restarted(n.id, n.applied, st)
	} else {
		c.check.observe(n.id, st)
	}
	n.role, n.term = st.Role, st.Term
	c.schedule(event{at: c.now + 1 + c.rng.Int64N(n.period), kind: evTick, node: n.id, inc: n.inc})
	c.touched(n)
}

// crash stops a node: everything not on its disk is gone.
func (c *cluster) crash(n *node, when string) {
	n.core, n.drive = nil, nil
	n.inc++
	n.readyQueued, n.crashArmed, n.crashAt, n.pausedUntil = false, false, readydrive.Idle, 0
	c.stats.Crashes++
	c.note(n.id, "CRASH %s", when)
	if !c.healed {
		down := 1 + c.rng.Int64N(int64(max(c.opts.Mix.MaxDownTicks, 1)))
		c.schedule(event{at: c.now + down*TickInterval, kind: evRestart, node: n.id, inc: n.inc})
	}
}

// touched runs after anything reached a node's core: check it, and let
// its runtime pick up the work it produced.
func (c *cluster) touched(n *node) {
	st := n.core.Status()
	c.check.observe(n.id, st)
	if st.Role != n.role || st.Term != n.term {
		c.note(n.id, "%v t%d -> %v t%d (lead %d, vote %d)", n.role, n.term, st.Role, st.Term, st.Lead, st.Vote)
		n.role, n.term = st.Role, st.Term
	}
	if n.drive.Next() == readydrive.Idle && !n.readyQueued && n.core.HasReady() {
		n.readyQueued = true
		// Disk latency: more work may pile up before the runtime gets to it.
		c.schedule(event{at: c.now + c.rng.Int64N(10), kind: evReady, node: n.id, inc: n.inc})
	}
}

// stepCore hands a message to a live node's core.
func (c *cluster) stepCore(n *node, m raftpb.Message) {
	err := n.core.Step(m)
	note := ""
	if err != nil {
		note = err.Error()
		// Every message here comes from a correct core (or the runtime's
		// own reports); the core rejects only malformed ones.
		if !errors.Is(err, raft.ErrProposalDropped) {
			c.check.failf(RuleContract, "node %d: Step(%v) rejected a message a correct peer sent: %v", n.id, m, err)
		}
	}
	c.line(traceLine{kind: lineDeliver, node: n.id, msg: m, note: note})
	if m.Type == raftpb.MsgSnap {
		// The snapshot stream finished: the transport tells the sender.
		c.reportSnapshot(m, false)
	}
	c.touched(n)
}

// ---- Ready ----

// takeReady starts the runtime's handling of a Ready. Half the time
// Messages wait for the write (both are allowed); half the time the
// runtime is synchronous, otherwise it lets the core take inputs between
// the driver's phases, as the core's contract allows, which is when a crash
// may leave a Ready half done.
func (c *cluster) takeReady(n *node) {
	n.readyQueued = false
	if n.drive.Next() != readydrive.Idle || !n.core.HasReady() {
		return
	}
	hold, sync := c.rng.IntN(2) == 0, c.rng.IntN(2) == 0
	rd, _ := n.drive.Start(hold)
	n.readySync, n.crashAt = sync, readydrive.Idle
	if n.crashArmed {
		// Just before persisting (Messages may be out, nothing is
		// durable), sending what waited for the write, applying
		// (everything sent, nothing applied) or Advance (applied, but
		// the core never heard of it).
		n.crashAt = readydrive.Persist + readydrive.Phase(c.rng.IntN(4))
	}
	c.line(traceLine{kind: lineReady, node: n.id, rd: summarize(rd, hold, sync, n.crashAt)})
	c.check.ready(n.id, len(c.nodes), rd)
	c.driveReady(n)
}

// driveReady carries n's Ready through the driver's phases: to the end for
// a synchronous runtime, otherwise up to Persist or Apply, which then come
// as an event a little later. A crash armed for a phase strikes just
// before it.
func (c *cluster) driveReady(n *node) {
	for p := n.drive.Next(); p != readydrive.Idle; p = n.drive.Next() {
		if p == n.crashAt {
			c.crash(n, "in a Ready, before "+p.String())
			return
		}
		_ = n.drive.Step() // nodeRuntime never fails: it reports to the checker
		if n.readySync {
			continue
		}
		switch n.drive.Next() {
		case readydrive.Persist:
			c.schedule(event{at: c.now + c.rng.Int64N(20), kind: evPersist, node: n.id, inc: n.inc})
			return
		case readydrive.Apply:
			c.schedule(event{at: c.now + c.rng.Int64N(10), kind: evApply, node: n.id, inc: n.inc})
			return
		}
	}
	c.touched(n)
}

// nodeRuntime is a simulated node's side of the Ready driver: the simulated
// network, disk and state machine, and the checks of what reaches them.
type nodeRuntime struct {
	c *cluster
	n *node
}

var _ readydrive.Runtime = nodeRuntime{}

func (r nodeRuntime) Send(msgs []raftpb.Message) { r.c.send(r.n, msgs) }

func (r nodeRuntime) Persist(rd *raft.Ready) error {
	c, n := r.c, r.n
	if !rd.Snapshot.IsEmpty() {
		if err := n.disk.ApplySnapshot(rd.Snapshot); err != nil {
			c.check.failf(RuleContract, "node %d's disk refused the Ready's snapshot at %d: %v", n.id, rd.Snapshot.Metadata.Index, err)
		}
	}
	if len(rd.Entries) > 0 {
		// A real disk keeps its own copy: the core must not see later
		// changes to what it handed out, nor make them.
		if err := n.disk.Append(cloneEntries(rd.Entries)); err != nil {
			c.check.failf(RuleContract, "node %d's disk refused the Ready's entries: %v", n.id, err)
		}
	}
	if !rd.HardState.IsEmpty() {
		_ = n.disk.SetHardState(rd.HardState) // MemoryStorage never fails here
	}
	c.check.persisted(n.id, rd)
	return nil
}

func (r nodeRuntime) Apply(rd *raft.Ready) error {
	c, n := r.c, r.n
	if s := rd.Snapshot; !s.IsEmpty() {
		if err := n.sm.Restore(s.Data); err != nil {
			c.check.failf(RuleContract, "node %d cannot restore the snapshot at %d: %v", n.id, s.Metadata.Index, err)
			return nil
		}
		n.applied, n.conf = s.Metadata.Index, s.Metadata.ConfState
		c.check.restored(n.id, n.applied)
		c.stats.Installed++
	}
	for i := range rd.CommittedEntries {
		e := &rd.CommittedEntries[i]
		c.check.applied(n.id, e)
		if err := n.sm.Apply(*e); err != nil {
			c.check.failf(RuleContract, "node %d's state machine refused %d/%d: %v", n.id, e.Index, e.Term, err)
		}
		n.applied = e.Index
		if e.Type == raftpb.EntryConfChange {
			c.applyConfChange(n, e)
			continue
		}
		if c.clients != nil {
			c.appliedByClient(n, e)
		}
		if len(e.Data) >= 8 {
			delete(c.pending, binary.BigEndian.Uint64(e.Data))
		}
		if mask, ok := c.markers[string(e.Data)]; ok && len(e.Data) > 0 {
			mask |= 1 << (n.id - 1)
			c.markers[string(e.Data)] = mask
			c.markerApplied(mask)
		}
	}
	// Really applied: the core may now let the next conf change through.
	n.core.AppliedTo(n.applied)
	for _, rs := range rd.ReadStates {
		c.check.readAnswered(n.id, rs)
		c.stats.Reads++
		if c.clients != nil {
			c.readIndexed(n, rs)
		}
	}
	if c.clients != nil {
		c.serveReads(n)
	}
	return nil
}

// busyDisk is the storage a core reads through. Like a runtime that
// writes snapshots in the background, it now and then has none ready yet,
// once snapshots are in play (busy) and the core runs: New reads the
// snapshot's index before anything writes in the background.
type busyDisk struct {
	*raft.MemoryStorage
	c    *cluster
	busy bool
}

func (d *busyDisk) Snapshot() (raftpb.Snapshot, error) {
	if d.busy && d.c.rng.IntN(4) == 0 {
		return raftpb.Snapshot{}, raft.ErrSnapshotTemporarilyUnavailable
	}
	return d.MemoryStorage.Snapshot()
}

func cloneEntries(ents []raftpb.Entry) []raftpb.Entry {
	out := make([]raftpb.Entry, len(ents))
	for i, e := range ents {
		e.Data = append([]byte(nil), e.Data...)
		out[i] = e
	}
	return out
}
