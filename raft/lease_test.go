package raft

import (
	"errors"
	"fmt"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func withLease(c *Config) {
	c.ReadOnlyOption = ReadOnlyLeaseBased
	c.CheckQuorum = true
}

func TestLeaseConfigValidation(t *testing.T) {
	if got := DefaultConfig().ReadOnlyOption; got != ReadOnlySafe {
		t.Fatalf("default ReadOnlyOption is %v, want %v", got, ReadOnlySafe)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"safe without check quorum", func(c *Config) {}, true},
		{"lease with check quorum", withLease, true},
		{"lease without check quorum", func(c *Config) { withLease(c); c.CheckQuorum = false }, false},
		{"lease with no room for a lease", func(c *Config) { withLease(c); c.ElectionTicks, c.HeartbeatTicks = 2, 1 }, false},
		{"lease at the smallest election timeout", func(c *Config) { withLease(c); c.ElectionTicks, c.HeartbeatTicks = 3, 1 }, true},
		{"unknown option", func(c *Config) { c.CheckQuorum = true; c.ReadOnlyOption = 7 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(1, []uint64{1, 2, 3}, NewMemoryStorage())
			tc.mod(&cfg)
			_, err := New(cfg)
			if got := err == nil; got != tc.ok {
				t.Fatalf("New: got error %v, want success %v", err, tc.ok)
			}
		})
	}
}

// leaseLeaderOf3 returns node 1 leading {1,2,3} in lease mode, with its
// empty entry committed, after one tick whose heartbeats node 2
// acknowledged: it holds a lease dated from leader tick 1.
func leaseLeaderOf3(t *testing.T) (*Core, *MemoryStorage) {
	t.Helper()
	c, st := leaderOf3(t, withLease)
	c.Tick()
	ackHeartbeats(t, c, st, 2)
	return c, st
}

// ackHeartbeats hands out c's Ready and acknowledges its heartbeats as
// each of the peers from.
func ackHeartbeats(t *testing.T, c *Core, st *MemoryStorage, from ...uint64) {
	t.Helper()
	hbs := ofType(sent(t, c, st), raftpb.MsgHeartbeat)
	if len(hbs) == 0 {
		t.Fatal("no heartbeats to acknowledge")
	}
	for _, id := range from {
		mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: id, To: 1, Term: c.Status().Term, Context: hbs[0].Context})
	}
}

// readAtOnce asks c for a read and reports whether the next Ready answers
// it, failing if it is answered in any other way than ctx at index.
func readAtOnce(t *testing.T, c *Core, st *MemoryStorage, ctx string, index uint64) (answered bool, rd Ready) {
	t.Helper()
	c.ReadIndex([]byte(ctx))
	rd = persist(t, c, st)
	switch {
	case len(rd.ReadStates) == 0:
		return false, rd
	case len(rd.ReadStates) > 1 || string(rd.ReadStates[0].Context) != ctx || rd.ReadStates[0].Index != index:
		t.Fatalf("got %+v, want only %q at index %d", rd.ReadStates, ctx, index)
	}
	return true, rd
}

func TestLeaseReadServedWithoutRound(t *testing.T) {
	c, st := leaseLeaderOf3(t)
	answered, rd := readAtOnce(t, c, st, "a", 1)
	if !answered {
		t.Fatal("a leader holding a lease did not answer at once")
	}
	if hbs := ofType(rd.Messages, raftpb.MsgHeartbeat); len(hbs) != 0 {
		t.Fatalf("a lease read sent a heartbeat round: %v", hbs)
	}
}

func TestSafeModeIgnoresAcknowledgedHeartbeats(t *testing.T) {
	// The same history without the lease option still needs a round.
	c, st := leaderOf3(t, withCheckQuorum)
	c.ReadIndex([]byte("warm"))
	ackHeartbeats(t, c, st, 2)
	persist(t, c, st)
	if answered, _ := readAtOnce(t, c, st, "a", 1); answered {
		t.Fatal("a safe-mode leader answered without a round")
	}
}

func TestLeaseExpiresAfterElectionTicksMinusTwo(t *testing.T) {
	c, st := leaseLeaderOf3(t)
	// The acknowledged round was opened at leader tick 1; the lease covers
	// ticks 1 to ElectionTicks-2 after it.
	lease := c.cfg.ElectionTicks - 2
	for range lease - 1 {
		c.Tick()
		persist(t, c, st) // heartbeats nobody answers
	}
	if answered, _ := readAtOnce(t, c, st, "last", 1); !answered {
		t.Fatal("lease ended a tick early")
	}
	c.Tick()
	persist(t, c, st)
	answered, rd := readAtOnce(t, c, st, "late", 1)
	if answered {
		t.Fatalf("answered %d ticks after the acknowledged heartbeats, want a round", lease)
	}
	hbs := ofType(rd.Messages, raftpb.MsgHeartbeat)
	if len(hbs) != 2 {
		t.Fatalf("got %v, want the read queued behind a heartbeat round", hbs)
	}
	// The round's acknowledgement answers the read and renews the lease.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 3, To: 1, Term: 1, Context: hbs[0].Context})
	if rd := persist(t, c, st); len(rd.ReadStates) != 1 || string(rd.ReadStates[0].Context) != "late" {
		t.Fatalf("after the round got %v, want late answered", rd.ReadStates)
	}
	if answered, _ := readAtOnce(t, c, st, "renewed", 1); !answered {
		t.Fatal("the round's acknowledgement did not renew the lease")
	}
}

func TestLeaseDatesFromSendingNotReceiving(t *testing.T) {
	c, st := leaderOf3(t, withLease)
	c.Tick()
	old := ofType(sent(t, c, st), raftpb.MsgHeartbeat)
	for range c.cfg.ElectionTicks - 2 {
		c.Tick()
		persist(t, c, st)
	}
	// A quorum acknowledges the first heartbeats only now: they vouch for
	// nothing, since followers heard them long ago.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: 1, Context: old[0].Context})
	if answered, _ := readAtOnce(t, c, st, "a", 1); answered {
		t.Fatal("a late acknowledgement of old heartbeats renewed the lease")
	}
}

func TestLeaseNeedsAQuorum(t *testing.T) {
	c, st := leaderOf3(t, withLease, func(cfg *Config) { cfg.Voters = []uint64{1, 2, 3, 4, 5} })
	c.Tick()
	ackHeartbeats(t, c, st, 2) // two of five
	if answered, _ := readAtOnce(t, c, st, "a", 1); answered {
		t.Fatal("answered with acknowledgements from a minority")
	}
}

func TestLeaseReadsWaitForCommitInTerm(t *testing.T) {
	c, st := newElected(t, withLease)
	c.Tick()
	ackHeartbeats(t, c, st, 2) // a lease, but nothing of term 1 committed
	if answered, _ := readAtOnce(t, c, st, "early", 1); answered {
		t.Fatal("a new leader answered before committing an entry of its term")
	}
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 1, Index: 1})
	rd := persist(t, c, st)
	if len(rd.ReadStates) != 1 || rd.ReadStates[0].Index != 1 {
		t.Fatalf("got %v, want early answered at index 1 once the entry committed", rd.ReadStates)
	}
	if hbs := ofType(rd.Messages, raftpb.MsgHeartbeat); len(hbs) != 0 {
		t.Fatalf("the lease read waited for a round: %v", hbs)
	}
}

func TestTransferEndsLease(t *testing.T) {
	c, st := leaseLeaderOf3(t)
	c.TransferLeadership(2)
	if tn := ofType(sent(t, c, st), raftpb.MsgTimeoutNow); len(tn) != 1 {
		t.Fatalf("got %v, want MsgTimeoutNow to 2", tn)
	}
	answered, rd := readAtOnce(t, c, st, "a", 1)
	if answered {
		t.Fatal("answered from the lease after letting a transferee campaign")
	}
	// Reads still work, through rounds.
	hbs := ofType(rd.Messages, raftpb.MsgHeartbeat)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 3, To: 1, Term: 1, Context: hbs[0].Context})
	if rd := persist(t, c, st); len(rd.ReadStates) != 1 {
		t.Fatalf("got %v, want a answered by the round", rd.ReadStates)
	}
	// Even once the transfer has timed out, the MsgTimeoutNow may still
	// arrive: no lease for the rest of the term.
	for range c.cfg.ElectionTicks {
		c.Tick()
		ackHeartbeats(t, c, st, 2, 3)
	}
	if err := c.Propose([]byte("x")); err != nil {
		t.Fatalf("transfer did not time out: %v", err)
	}
	persist(t, c, st)
	if answered, _ := readAtOnce(t, c, st, "b", 1); answered {
		t.Fatal("the lease came back in the term of the transfer")
	}
}

func TestLeaseReadThroughFollower(t *testing.T) {
	nw := newNetwork(t, 3, withPreVote, withLease)
	nw.elect(1)
	nw.tick(1, 1) // heartbeats whose acknowledgements give a lease
	nw.stabilize()
	nw.trace = nil
	nw.core(2).ReadIndex([]byte("f"))
	nw.stabilize()
	if reads := nw.nodes[2].reads; len(reads) != 1 || string(reads[0].Context) != "f" || reads[0].Index != 1 {
		t.Fatalf("follower got %v, want f at index 1", reads)
	}
	for _, m := range nw.trace {
		if m.Type != raftpb.MsgReadIndex && m.Type != raftpb.MsgReadIndexResp {
			t.Fatalf("the read took %v; want only the request and its answer", m)
		}
	}
}

// TestPartitionedLeaseLeaderServesNoStaleReads cuts a lease-holding leader
// off and ticks every node in lockstep. The old leader keeps answering from
// its lease for a while, but never once the others could elect a new
// leader, and never after they have.
//
// The followers take their first tick right after the leader's last
// heartbeats reach them, the worst phase for the lease; with slowLeader the
// leader's clock also misses a tick, the drift the lease's margin allows.
func TestPartitionedLeaseLeaderServesNoStaleReads(t *testing.T) {
	for _, slowLeader := range []bool{false, true} {
		for seed := range uint64(10) {
			t.Run(fmt.Sprintf("slow=%v/seed=%d", slowLeader, seed), func(t *testing.T) {
				partitionLeaseLeader(t, seed, slowLeader)
			})
		}
	}
}

func partitionLeaseLeader(t *testing.T, seed uint64, slowLeader bool) {
	nw := newNetwork(t, 3, withPreVote, withLease, func(c *Config) { c.Rand = newRand(seed*10 + c.ID) })
	nw.elect(1)
	nw.propose(1, "x")
	nw.tick(1, 1)
	nw.stabilize()
	nw.isolate(1)
	nw.tick(2, 1)
	nw.tick(3, 1)

	servedIsolated, newLeader := 0, uint64(0)
	for step := 0; step < 4*nw.nodes[1].cfg.ElectionTicks; step++ {
		for _, id := range nw.ids {
			if id != 1 || step > 0 || !slowLeader {
				nw.tick(id, 1)
			}
		}
		nw.stabilize()
		// Could 2 and 3 elect a leader without 1 now? Only once neither
		// still honours 1's lease.
		couldElect := !nw.core(2).inLease() && !nw.core(3).inLease()
		for _, id := range []uint64{2, 3} {
			if nw.core(id).Status().Role == Leader && newLeader == 0 {
				newLeader = id
				nw.propose(id, "y") // the write a stale read would miss
				nw.stabilize()
			}
		}
		before := len(nw.nodes[1].reads)
		nw.core(1).ReadIndex(fmt.Appendf(nil, "r%d", step))
		nw.stabilize()
		if len(nw.nodes[1].reads) == before {
			continue
		}
		if couldElect || newLeader != 0 {
			t.Fatalf("step %d: the old leader answered %v although a new leader could exist (leader %d)", step, nw.nodes[1].reads[before:], newLeader)
		}
		servedIsolated++
	}
	if servedIsolated == 0 {
		t.Fatal("the old leader served no read from its lease after the partition")
	}
	if newLeader == 0 {
		t.Fatal("no new leader was elected")
	}
	if s := nw.core(1).Status(); s.Role == Leader {
		t.Fatal("the isolated leader never stepped down")
	}
}

func TestRestartedVoterWaitsOutLease(t *testing.T) {
	// Node 2 of {1,2,3} restarts in term 1. It may have acknowledged a
	// heartbeat of 1 just before: it must not help elect 3 until an
	// election timeout has passed, as if it had heard from 1 at start.
	vote := raftpb.Message{Type: raftpb.MsgVote, From: 3, To: 2, Term: 2, Index: 1, LogTerm: 1}
	granted := func(t *testing.T, c *Core, st *MemoryStorage) bool {
		t.Helper()
		mustStep(t, c, vote)
		for _, m := range ofType(sent(t, c, st), raftpb.MsgVoteResp) {
			return !m.Reject
		}
		return false
	}
	c, st := coreWithLog(t, 2, []uint64{1, 2, 3}, 1, []uint64{1}, withLease)
	c.randomizedElectionTimeout = 2 * c.cfg.ElectionTicks // no campaign of its own here
	if err := c.Campaign(); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("Campaign right after restart: got %v, want ErrLeaseHeld", err)
	}
	for range c.cfg.ElectionTicks - 1 {
		c.Tick()
	}
	if granted(t, c, st) {
		t.Fatal("voted within an election timeout of restarting")
	}
	c.Tick()
	if !granted(t, c, st) {
		t.Fatal("still refusing votes an election timeout after restarting")
	}

	// Without leases the rule does not apply.
	c, st = coreWithLog(t, 2, []uint64{1, 2, 3}, 1, []uint64{1}, withCheckQuorum)
	if !granted(t, c, st) {
		t.Fatal("a safe-mode node refused a vote after restarting")
	}
}

func TestCampaignRefusedWhileLeaderIsHeard(t *testing.T) {
	fresh, _ := newTestCore(t, 2, []uint64{1, 2, 3}, withLease)
	if err := fresh.Campaign(); err != nil {
		t.Fatalf("a brand-new node may campaign: got %v", err)
	}
	c, st := newTestCore(t, 2, []uint64{1, 2, 3}, withLease)
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 1})
	persist(t, c, st)
	if err := c.Campaign(); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("got %v, want ErrLeaseHeld while the leader's lease may hold", err)
	}
	if s := c.Status(); s.Role != Follower || s.Term != 1 {
		t.Fatalf("node is %v in term %d, want an undisturbed follower in term 1", s.Role, s.Term)
	}
	// A leader's MsgTimeoutNow still makes it campaign at once.
	mustStep(t, c, raftpb.Message{Type: raftpb.MsgTimeoutNow, From: 1, To: 2, Term: 1})
	if s := c.Status(); s.Role != Candidate || s.Term != 2 {
		t.Fatalf("after MsgTimeoutNow node is %v in term %d, want candidate in term 2", s.Role, s.Term)
	}
}

func TestLeaseTransferInNetwork(t *testing.T) {
	nw := newNetwork(t, 3, withPreVote, withLease)
	nw.elect(1)
	nw.tick(1, 1)
	nw.stabilize()
	nw.core(1).TransferLeadership(2)
	nw.stabilize()
	if s := nw.core(2).Status(); s.Role != Leader {
		t.Fatalf("node 2 is %v, want leader after the transfer", s.Role)
	}
	// The new leader reads from its own lease once it has one.
	nw.tick(2, 1)
	nw.stabilize()
	nw.trace = nil
	nw.core(2).ReadIndex([]byte("n"))
	nw.stabilize()
	if reads := nw.nodes[2].reads; len(reads) != 1 || reads[0].Index != 2 {
		t.Fatalf("new leader got %v, want n at index 2", reads)
	}
	if len(nw.trace) != 0 {
		t.Fatalf("the new leader's lease read sent %v", nw.trace)
	}
}
