package raft

import "fmt"

// ProgressState is how a leader currently replicates to one follower.
type ProgressState uint8

const (
	// StateProbe: the leader does not know where the follower's log
	// matches; it sends one append at a time and waits for the answer.
	StateProbe ProgressState = iota
	// StateReplicate: the logs match up to Match; the leader streams
	// appends optimistically, bounded by the inflight window.
	StateReplicate
	// StateSnapshot: the follower needs entries the leader compacted; the
	// leader sent a snapshot and sends nothing else until it is reported.
	StateSnapshot
)

func (s ProgressState) String() string {
	switch s {
	case StateProbe:
		return "probe"
	case StateReplicate:
		return "replicate"
	case StateSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("ProgressState(%d)", uint8(s))
}

// progress is the leader's view of one peer (itself included).
//
// Invariant: match < next. Entries (match, next) may be in flight.
type progress struct {
	match, next uint64
	state       ProgressState
	// pendingSnapshot is the index of the snapshot in flight (StateSnapshot).
	pendingSnapshot uint64
	// sentCommit is the highest commit index sent to the peer (as far as it
	// can apply it: not past the entries sent).
	sentCommit uint64
	// snapshotStale: the snapshot has been pending since the previous
	// election-timeout check.
	snapshotStale bool
	// recentActive is set by any message from the peer and cleared by the
	// leader every election timeout (CheckQuorum).
	recentActive bool
	// probeSent pauses a StateProbe peer after one append until it answers
	// or acknowledges a heartbeat, so a lagging peer gets no flood.
	probeSent bool
	inflights *inflights
	isLearner bool
}

func (pr *progress) resetState(state ProgressState) {
	pr.probeSent = false
	pr.pendingSnapshot = 0
	pr.snapshotStale = false
	pr.state = state
	pr.inflights.reset()
}

func (pr *progress) becomeProbe() {
	next := pr.match + 1
	if pr.state == StateSnapshot {
		// After a snapshot the follower has at least the snapshot's
		// entries (none if the send failed: pendingSnapshot is then 0).
		next = max(next, pr.pendingSnapshot+1)
	}
	pr.resetState(StateProbe)
	pr.next = next
}

func (pr *progress) becomeReplicate() {
	pr.resetState(StateReplicate)
	pr.next = pr.match + 1
}

func (pr *progress) becomeSnapshot(snapIndex uint64) {
	pr.resetState(StateSnapshot)
	pr.pendingSnapshot = snapIndex
}

// sentEntries records an append of n entries (bytes in total) that ends at
// last. An empty probe still pauses a probing peer.
func (pr *progress) sentEntries(n int, bytes, last uint64) {
	switch pr.state {
	case StateReplicate:
		if n > 0 {
			pr.next = last + 1
			pr.inflights.add(last, bytes)
		}
	case StateProbe:
		pr.probeSent = true
	}
}

// maybeUpdate records that the peer's log matches the leader's up to n. It
// returns false for a stale acknowledgement.
func (pr *progress) maybeUpdate(n uint64) bool {
	updated := false
	if pr.match < n {
		pr.match = n
		updated = true
		pr.probeSent = false
	}
	pr.next = max(pr.next, n+1)
	return updated
}

// maybeDecrTo handles a rejection of the append whose previous index was
// rejected. hint is the highest index at which the logs may still match. It
// returns false when the rejection is stale (answers an older append).
func (pr *progress) maybeDecrTo(rejected, hint uint64) bool {
	if pr.state == StateReplicate {
		// Appends are pipelined: only a rejection above match is news,
		// and then the leader starts over from match.
		if rejected <= pr.match {
			return false
		}
		pr.next = pr.match + 1
		return true
	}
	// Probing sends one append at a time, at next-1.
	if pr.next-1 != rejected {
		return false
	}
	pr.next = max(min(rejected, hint+1), pr.match+1)
	pr.probeSent = false
	return true
}

// isPaused reports whether the leader must hold further appends back.
func (pr *progress) isPaused() bool {
	switch pr.state {
	case StateProbe:
		return pr.probeSent
	case StateReplicate:
		return pr.inflights.full()
	default:
		return true
	}
}

func (pr *progress) String() string {
	return fmt.Sprintf("%s match=%d next=%d inflight=%d", pr.state, pr.match, pr.next, pr.inflights.count)
}

// inflights is a ring of the appends sent to one follower and not yet
// acknowledged, bounded by count and by bytes.
type inflights struct {
	start, count int
	bytes        uint64
	maxCount     int
	maxBytes     uint64 // 0: no byte bound
	buf          []inflight
}

type inflight struct {
	last  uint64 // index of the last entry of the append
	bytes uint64
}

func newInflights(maxCount int, maxBytes uint64) *inflights {
	return &inflights{maxCount: maxCount, maxBytes: maxBytes}
}

func (in *inflights) add(last, bytes uint64) {
	if len(in.buf) < in.maxCount && in.count == len(in.buf) {
		// Grow lazily: most followers never fill the window.
		nb := make([]inflight, min(max(2*len(in.buf), 4), in.maxCount))
		for i := range in.count {
			nb[i] = in.buf[(in.start+i)%len(in.buf)]
		}
		in.buf, in.start = nb, 0
	}
	in.buf[(in.start+in.count)%len(in.buf)] = inflight{last: last, bytes: bytes}
	in.count++
	in.bytes += bytes
}

// freeLE drops the appends that end at or below idx: they are acknowledged.
func (in *inflights) freeLE(idx uint64) {
	for in.count > 0 && in.buf[in.start].last <= idx {
		in.bytes -= in.buf[in.start].bytes
		in.start = (in.start + 1) % len(in.buf)
		in.count--
	}
	if in.count == 0 {
		in.start = 0
	}
}

// freeFirst drops the oldest append.
func (in *inflights) freeFirst() {
	if in.count > 0 {
		in.freeLE(in.buf[in.start].last)
	}
}

func (in *inflights) full() bool {
	return in.count >= in.maxCount || (in.maxBytes > 0 && in.bytes >= in.maxBytes)
}

func (in *inflights) reset() {
	in.start, in.count, in.bytes = 0, 0, 0
}
