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
}

type readRequest struct {
	from  uint64 // None or the leader itself for local requests
	ctx   []byte
	index uint64
	round uint64
}

func (ro *readOnly) reset() {
	*ro = readOnly{acked: make(quorum.MapAckIndexer)}
}

// add queues a request made at commit index and reports whether a new round
// was opened (so the caller must broadcast heartbeats).
func (ro *readOnly) add(from uint64, ctx []byte, index uint64) bool {
	opened := false
	if !ro.open {
		ro.round++
		ro.open = true
		ro.roundCtx = binary.BigEndian.AppendUint64(nil, ro.round)
		opened = true
	}
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

// release removes and returns the requests whose round a quorum of voters
// has confirmed. self is the leader's id: it always confirms its own rounds.
func (ro *readOnly) release(voters quorum.JointConfig, self uint64) []readRequest {
	if len(ro.pending) == 0 {
		return nil
	}
	ro.acked[self] = ro.round
	confirmed := voters.CommittedIndex(ro.acked)
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
