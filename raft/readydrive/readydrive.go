// Package readydrive carries out a raft.Ready in the order its contract
// demands. It is the one piece of code that decides that order: the node
// runtime runs it against real disks and sockets, and the simulator runs it
// against simulated ones, so the ordering the simulator checks is the
// ordering production uses.
//
// The order matters because of what a message promises. A vote or an
// append acknowledgement says "I will remember this": it may leave only once
// the Ready that recorded it is durable, or a crash could make the node
// vote twice in a term or forget an entry a leader counted toward commit.
// A leader's appends and heartbeats promise nothing about its own disk, so
// they may leave first and overlap the write (Raft thesis §10.2.1). Entries
// are applied only once committed and durable, and the core hears of it
// (Advance) only after all of that, since Advance lets it count its own
// write and hand out the next Ready.
//
// A Driver takes one Ready at a time and walks it through the phases below.
// A runtime that does everything at once calls Run; one that wants to
// interleave other inputs between phases, or (in the simulator) crash
// between them, calls Start and then Step phase by phase. The core may take
// ticks, messages and proposals between phases: its contract allows
// anything but a second Ready before Advance.
//
// The package imports only raft and raftpb, and keeps the core's rules: no
// goroutine, no I/O, no clock. Everything with side effects goes through
// the Runtime.
package readydrive

import (
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// Core is the part of raft.Core a Driver uses.
type Core interface {
	HasReady() bool
	Ready() raft.Ready
	Advance(raft.Ready)
}

var _ Core = (*raft.Core)(nil)

// Runtime carries out a Ready's side effects. The Driver calls it from the
// goroutine that calls Start, Step and Run, in the order of the phases.
type Runtime interface {
	// Send hands messages to the network. Delivery is best effort: a
	// message may be lost, which the protocol tolerates; it must not be
	// held back past a later Send.
	Send(msgs []raftpb.Message)
	// Persist makes rd.Snapshot (if not empty), rd.Entries and
	// rd.HardState (if not empty) durable before it returns, replacing
	// any stored entries from rd.Entries[0].Index on. rd.MustSync false
	// means only the commit index moved, which the runtime may write
	// lazily or not at all.
	Persist(rd *raft.Ready) error
	// Apply applies rd.Snapshot, then rd.CommittedEntries, in order, and
	// answers rd.ReadStates (each once the state machine has applied its
	// index). It may instead queue that work for another goroutine, in
	// order, and return: everything Apply is given is already durable.
	Apply(rd *raft.Ready) error
}

// Phase names the next thing a Driver does with the Ready it holds.
type Phase uint8

const (
	// Idle: the Driver holds no Ready; Start takes the next one.
	Idle Phase = iota
	// SendEarly sends rd.Messages, unless they are held for
	// SendPersisted.
	SendEarly
	// Persist calls Runtime.Persist.
	Persist
	// SendPersisted sends held rd.Messages, then rd.MessagesAfterPersist.
	SendPersisted
	// Apply calls Runtime.Apply.
	Apply
	// Advance tells the core the Ready is done; the Driver is Idle again.
	Advance
)

func (p Phase) String() string {
	switch p {
	case Idle:
		return "idle"
	case SendEarly:
		return "send"
	case Persist:
		return "persist"
	case SendPersisted:
		return "send after persisting"
	case Apply:
		return "apply"
	case Advance:
		return "advance"
	}
	return "unknown phase"
}

// Driver walks a core's Readies through a Runtime. It is not safe for
// concurrent use: like the core, it belongs to one goroutine.
type Driver struct {
	core Core
	rt   Runtime

	rd   raft.Ready // the Ready in hand, while next != Idle
	next Phase
	// hold: rd.Messages wait for SendPersisted.
	hold bool
}

// New returns a Driver for core that acts through rt.
func New(core Core, rt Runtime) *Driver { return &Driver{core: core, rt: rt} }

// Start takes the core's next Ready, if there is one and the Driver is Idle,
// and returns it; Next is then SendEarly. The Ready belongs to the Driver
// until Advance: the caller may read it, not change it.
//
// With holdMessages, rd.Messages leave with rd.MessagesAfterPersist rather
// than before the write. That is always allowed; sending them early is an
// optimization, which the simulator turns off at random to cover both.
func (d *Driver) Start(holdMessages bool) (*raft.Ready, bool) {
	if d.next != Idle || !d.core.HasReady() {
		return nil, false
	}
	d.rd, d.next, d.hold = d.core.Ready(), SendEarly, holdMessages
	return &d.rd, true
}

// Next returns the phase the next Step carries out, or Idle.
func (d *Driver) Next() Phase { return d.next }

// Step carries out the next phase and moves on to the one after. It does
// nothing when Idle. When the Runtime fails, Step returns its error and the
// Driver drops the Ready without Advance: the runtime must not go on with
// this core (a failed write may have broken a promise the core made).
func (d *Driver) Step() error {
	var err error
	switch d.next {
	case Idle:
		return nil
	case SendEarly:
		if !d.hold {
			d.rt.Send(d.rd.Messages)
		}
	case Persist:
		err = d.rt.Persist(&d.rd)
	case SendPersisted:
		if d.hold {
			d.rt.Send(d.rd.Messages)
		}
		d.rt.Send(d.rd.MessagesAfterPersist)
	case Apply:
		err = d.rt.Apply(&d.rd)
	case Advance:
		d.core.Advance(d.rd)
		d.drop()
		return nil
	}
	if err != nil {
		d.drop()
		return err
	}
	d.next++
	return nil
}

// RunUntil carries out phases until the next one is p, or the Ready is done.
func (d *Driver) RunUntil(p Phase) error {
	for d.next != Idle && d.next != p {
		if err := d.Step(); err != nil {
			return err
		}
	}
	return nil
}

// Run handles the core's next Ready from start to Advance, if there is one
// and the Driver is Idle.
func (d *Driver) Run() error {
	if _, ok := d.Start(false); !ok {
		return nil
	}
	return d.RunUntil(Idle)
}

// drop forgets the Ready in hand.
func (d *Driver) drop() {
	d.rd, d.next, d.hold = raft.Ready{}, Idle, false
}
