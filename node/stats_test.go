package node

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestFsyncBuckets(t *testing.T) {
	var s stats
	for _, d := range []time.Duration{
		500 * time.Microsecond, // on the first bound: in its bucket
		3 * time.Millisecond,   // between 2ms and 5ms
		2 * time.Second,        // above every bound: only in the total
	} {
		s.synced(d, 4)
	}
	st := s.snapshot()
	want := []uint64{1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2}
	if !slices.Equal(st.FsyncBuckets, want) {
		t.Fatalf("buckets: got %v, want %v (bounds %v)", st.FsyncBuckets, want, FsyncBucketBounds())
	}
	if st.Fsyncs != 3 || st.EntriesPersisted != 12 {
		t.Fatalf("got %d fsyncs of %d entries, want 3 of 12", st.Fsyncs, st.EntriesPersisted)
	}
	if got, want := st.FsyncSeconds, 2.0035; got < want-1e-9 || got > want+1e-9 {
		t.Fatalf("fsync seconds: got %v, want %v", got, want)
	}
}

// TestStatsCountWhatHappened checks the counters of a live cluster after an
// election and some proposals.
func TestStatsCountWhatHappened(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	c.proposeN(lead, "cmd", 5)
	for i, n := range c.nodes {
		st := n.Stats()
		if st.Readies == 0 || st.MessagesSent == 0 || st.MessagesReceived == 0 {
			t.Errorf("node %d: got %d readies, %d messages sent, %d received; want some of each", i+1, st.Readies, st.MessagesSent, st.MessagesReceived)
		}
		if st.LeaderChanges == 0 {
			t.Errorf("node %d counts no leader change, but it knows a leader", i+1)
		}
		if len(st.FsyncBuckets) != len(FsyncBucketBounds()) || !slices.IsSorted(st.FsyncBuckets) || st.FsyncBuckets[len(st.FsyncBuckets)-1] > st.Fsyncs {
			t.Errorf("node %d: buckets %v are not cumulative counts within the %d fsyncs", i+1, st.FsyncBuckets, st.Fsyncs)
		}
	}
	st := c.nodes[lead].Stats()
	// The leader's empty entry and the five proposals.
	if st.EntriesPersisted < 6 || st.Fsyncs == 0 || st.FsyncSeconds <= 0 {
		t.Errorf("leader: got %d entries persisted in %d fsyncs taking %vs, want at least 6 in at least one", st.EntriesPersisted, st.Fsyncs, st.FsyncSeconds)
	}
	if st.Campaigns == 0 {
		t.Error("the leader counts no campaign")
	}
}

func TestTransferLeadershipFailsFast(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.start(0) // its peers never start: no leader can be elected
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	n := c.nodes[0]
	if err := n.TransferLeadership(ctx, 42); !errors.Is(err, ErrNotMember) {
		t.Fatalf("transfer to a stranger: got %v, want ErrNotMember", err)
	}
	if err := n.TransferLeadership(ctx, c.id(1)); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("transfer without a leader: got %v, want ErrNoLeader", err)
	}
	if _, err := n.Propose(ctx, []byte("x")); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("propose without a leader: got %v, want ErrNoLeader", err)
	}
	if ctx.Err() != nil {
		t.Fatal("waited for the deadline instead of failing fast")
	}
	if got := n.Stats().ProposalsDropped; got != 1 {
		t.Fatalf("proposals dropped: got %d, want 1", got)
	}
}
