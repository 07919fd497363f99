package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft"
)

func TestCoreConfigMapsLeaseReads(t *testing.T) {
	for _, tc := range []struct {
		lease bool
		want  raft.ReadOnlyOption
	}{{false, raft.ReadOnlySafe}, {true, raft.ReadOnlyLeaseBased}} {
		rc := coreConfig(Config{ElectionTicks: 10, HeartbeatTicks: 1, LeaseReads: tc.lease}, 1)
		if rc.ReadOnlyOption != tc.want || !rc.CheckQuorum {
			t.Errorf("LeaseReads %v: got %v with CheckQuorum %v, want %v with CheckQuorum", tc.lease, rc.ReadOnlyOption, rc.CheckQuorum, tc.want)
		}
	}
}

func TestLeaseReadsNeedRoomForALease(t *testing.T) {
	cfg := newCluster(t, 1, nil).cfgs[0]
	cfg.StateMachine = &recorder{}
	cfg.LeaseReads = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default timeouts: %v", err)
	}
	cfg.ElectionTicks, cfg.HeartbeatTicks = 2, 1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "LeaseReads") {
		t.Fatalf("ElectionTicks 2: got %v, want an error about LeaseReads", err)
	}
}

func TestTickClockCountsMissedTicks(t *testing.T) {
	start := time.Unix(1000, 0)
	k := tickClock{interval: 10 * time.Millisecond, max: 10, last: start}
	for _, tc := range []struct {
		after time.Duration
		want  int
	}{
		{5 * time.Millisecond, 0},
		{10 * time.Millisecond, 1},
		{15 * time.Millisecond, 0},                // the tick at 10ms was given already
		{42 * time.Millisecond, 3},                // a stall: 20, 30 and 40ms
		{41 * time.Millisecond, 0},                // the clock never goes back
		{10 * time.Second, 10},                    // a long pause gives at most max
		{10*time.Second + 10*time.Millisecond, 1}, // and is not paid back later
	} {
		if got := k.due(start.Add(tc.after)); got != tc.want {
			t.Fatalf("at %v: got %d ticks due, want %d", tc.after, got, tc.want)
		}
	}
}

// TestLeaseReadsOnThreeNodes runs a cluster with LeaseReads: reads on the
// leader and through followers see every write that finished before them,
// also after leadership moved (which ends the old leader's lease).
func TestLeaseReadsOnThreeNodes(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) { cfg.LeaseReads = true })
	lead := c.leader()
	readAll := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		for i, n := range c.nodes {
			commit := c.nodes[lead].Status().Commit
			if err := whenLed(ctx, n, func() error { return n.ReadIndex(ctx) }); err != nil {
				t.Fatalf("%s: ReadIndex on node %d: %v", what, i+1, err)
			}
			if got := n.Status().Applied; got < commit {
				t.Fatalf("%s: after ReadIndex node %d applied %d, want at least the commit %d from before the read", what, i+1, got, commit)
			}
		}
	}
	c.proposeN(c.follower(lead), "before", 3)
	readAll("first leader")

	to := c.follower(lead)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.nodes[lead].TransferLeadership(ctx, c.id(to)); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	lead = c.leader()
	c.proposeN(lead, "after", 3)
	readAll("after the transfer")
}
