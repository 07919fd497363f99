package raft

import (
	"encoding/binary"

	"github.com/raftkv/raftkv/raft/quorum"
)

// readOnly serves ReadIndex requests on a leader (Raft thesis §6.4).
//
// A request is answered with the commit index at the time it arrived, once
// the leader has confirmed it was still leader after that moment: a quorum
// acknowledged a heartbeat sent after the request arrived. Heartbeats carry
// a round number in their Context and followers echo it back.
//
// A round stays open (joinable) until its heartbeats are handed out in a
// Ready; requests arriving while it is open share it. A request arriving
// after its round left opens the next round: joining a round already on the
// wire would be unsafe, since its acknowledgements may predate the request.
//
// In lease mode (ReadOnlyLeaseBased) every heartbeat the leader broadcasts
// on its clock opens a round too, and the leader remembers the tick each
// round was opened at. The latest round a quorum acknowledged then dates
// the lease: it holds for leaseTicks ticks from that round's opening, which
// is no later than any follower received its heartbeats.
type readOnly struct {
	// round is the latest round opened in this term (0: none yet).
	round uint64
	// open: round's heartbeats have not left the core yet.
	open bool
	// roundCtx is round encoded, shared by every heartbeat of the round.
	roundCtx []byte
	// acked is the highest round each peer acknowledged.
	acked quorum.MapAckIndexer
	// pending are requests waiting for confirmation, in arrival order (so
	// in non-decreasing round order).
	pending []readRequest

	// leaseTicks is how long a quorum's acknowledgement vouches for this
	// leader, counted from when the acknowledged round was opened; 0 when
	// leases are off. It survives reset.
	leaseTicks uint64
	// now counts the ticks since this node became leader (lease mode).
	now uint64
	// opened holds the rounds that may still date a lease, with the tick
	// each was opened at, in round order: older ones have expired or been
	// superseded by a later acknowledged round.
	opened []roundTick
	// revoked: leases are over for this term, because the leader let a
	// transferee campaign without waiting for them to expire.
	revoked bool
}

type roundTick struct{ round, tick uint64 }

type readRequest struct {
	from  uint64 // None or the leader itself for local requests
	ctx   []byte
	index uint64
	round uint64
}

// reset forgets the rounds of the previous term, keeping the lease setting.
func (ro *readOnly) reset() {
	*ro = readOnly{acked: make(quorum.MapAckIndexer), leaseTicks: ro.leaseTicks}
}

// leased reports whether leases are on for this leader at all.
func (ro *readOnly) leased() bool { return ro.leaseTicks > 0 }

// openRound opens a new round unless one is still open, and reports whether
// it did (so the caller must broadcast heartbeats).
func (ro *readOnly) openRound() bool {
	if ro.open {
		return false
	}
	ro.round++
	ro.open = true
	ro.roundCtx = binary.BigEndian.AppendUint64(nil, ro.round)
	if ro.leased() && !ro.revoked {
		ro.opened = append(ro.opened, roundTick{round: ro.round, tick: ro.now})
	}
	return true
}

// add queues a request made at commit index and reports whether a new round
// was opened (so the caller must broadcast heartbeats).
func (ro *readOnly) add(from uint64, ctx []byte, index uint64) bool {
	opened := ro.openRound()
	ro.pending = append(ro.pending, readRequest{from: from, ctx: ctx, index: index, round: ro.round})
	return opened
}

// sent marks the open round as on the wire.
func (ro *readOnly) sent() { ro.open = false }

// heartbeatCtx is the Context to put on a heartbeat: the latest round.
func (ro *readOnly) heartbeatCtx() []byte { return ro.roundCtx }

// ack records that peer acknowledged a heartbeat carrying ctx. Malformed
// contexts (from an older sender, or garbage) are ignored.
func (ro *readOnly) ack(peer uint64, ctx []byte) {
	if len(ctx) != 8 {
		return
	}
	r := binary.BigEndian.Uint64(ctx)
	if r > ro.round {
		return // not a round of ours: a bogus acknowledgement proves nothing
	}
	if r > ro.acked[peer] {
		ro.acked[peer] = r
	}
}

// confirmed returns the latest round a quorum of voters acknowledged. self
// is the leader's id: it always confirms its own rounds.
func (ro *readOnly) confirmed(voters quorum.JointConfig, self uint64) uint64 {
	ro.acked[self] = ro.round
	return voters.CommittedIndex(ro.acked)
}

// release removes and returns the requests whose round a quorum of voters
// has confirmed.
func (ro *readOnly) release(voters quorum.JointConfig, self uint64) []readRequest {
	if len(ro.pending) == 0 {
		return nil
	}
	confirmed := ro.confirmed(voters, self)
	n := 0
	for n < len(ro.pending) && ro.pending[n].round <= confirmed {
		n++
	}
	if n == 0 {
		return nil
	}
	done := ro.pending[:n:n]
	ro.pending = ro.pending[n:]
	return done
}

// tick advances the lease clock by one tick and forgets the rounds too old
// to vouch for a lease any more.
func (ro *readOnly) tick() {
	if !ro.leased() {
		return
	}
	ro.now++
	n := 0
	for n < len(ro.opened) && ro.now-ro.opened[n].tick >= ro.leaseTicks {
		n++
	}
	ro.opened = ro.opened[n:]
}

// revoke ends leases for the rest of the term.
func (ro *readOnly) revoke() {
	ro.revoked = true
	ro.opened = nil
}

// leaseValid reports whether this leader holds a lease now: a quorum of
// voters acknowledged a round opened less than leaseTicks ticks ago, so no
// other leader can have been elected yet.
func (ro *readOnly) leaseValid(voters quorum.JointConfig, self uint64) bool {
	if !ro.leased() || ro.revoked {
		return false
	}
	confirmed := ro.confirmed(voters, self)
	n := 0
	for n < len(ro.opened) && ro.opened[n].round < confirmed {
		n++ // superseded by the later confirmed round
	}
	ro.opened = ro.opened[n:]
	return len(ro.opened) > 0 && ro.opened[0].round == confirmed && ro.now-ro.opened[0].tick < ro.leaseTicks
}
