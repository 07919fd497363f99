package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// addNode configures a new node called name that will join c (not started,
// not yet added), and returns its index.
func (c *cluster) addNode(name string) int {
	c.t.Helper()
	cfg := c.cfgs[0]
	cfg.Name, cfg.DataDir, cfg.PeerAddr = name, c.t.TempDir(), ""
	cfg.Logger = testLogger(c.t).With("test_node", name)
	cfg.Members = []Member{NewMember(name, freeAddr(c.t))}
	c.cfgs = append(c.cfgs, cfg)
	c.names = append(c.names, name)
	c.ids = append(c.ids, 0) // the leader gives it one when it joins
	c.nodes = append(c.nodes, nil)
	c.sms = append(c.sms, nil)
	return len(c.cfgs) - 1
}

// join adds node i as a joiner through node via, then starts it with the
// members the leader knows, as raftkv serve --join does.
func (c *cluster) join(via, i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	self := c.cfgs[i].Members[0]
	m, err := c.nodes[via].AddJoiner(ctx, self.Name, self.Addr)
	if err != nil {
		c.t.Fatalf("add joiner %s through node %d: %v", self.Name, via+1, err)
	}
	c.ids[i] = m.ID
	st := c.nodes[via].Status()
	c.cfgs[i].ClusterID = st.ClusterID
	c.cfgs[i].Members = nil
	for _, m := range st.Members {
		c.cfgs[i].Members = append(c.cfgs[i].Members, m.Member)
	}
	c.cfgs[i].Join = true
	c.start(i)
}

// role returns member id's role as node i sees it, "" if not a member.
func (c *cluster) role(i int, id uint64) MemberRole {
	m, ok := c.nodes[i].Status().Member(id)
	if !ok {
		return ""
	}
	return m.Role
}

// waitVoters waits until every running node's configuration has exactly the
// voters want (by index), with no joint half.
func (c *cluster) waitVoters(want ...int) {
	c.t.Helper()
	var ids []uint64
	for _, i := range want {
		ids = append(ids, c.id(i))
	}
	slices.Sort(ids)
	eventually(c.t, fmt.Sprintf("every node to have voters %v", want), func() bool {
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			cs := n.Status().Config
			if cs.Joint() || !slices.Equal(cs.Voters, ids) {
				return false
			}
		}
		return true
	})
}

// TestJoinCatchUpAndAutoPromote: a node that asks to join is added as a
// learner, catches up (by snapshot: the log it needs is compacted), is
// promoted to voter by the leader on its own, and then counts: with two of
// the founders down, it and the third commit.
func TestJoinCatchUpAndAutoPromote(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 20
		cfg.CatchUpEntries = -1
	})
	lead := c.leader()
	want := c.proposeN(lead, "before", 50)

	j := c.addNode("n4")
	c.join(lead, j)
	eventually(t, "n4 to be promoted to voter", func() bool {
		return c.role(lead, c.id(j)) == RoleVoter
	})
	c.waitVoters(0, 1, 2, 3)
	c.waitApplied(j, want)
	if c.sms[j].restoreCount() == 0 {
		t.Error("n4 caught up without a snapshot, though the log was compacted")
	}
	st := c.nodes[j].Status()
	if m, ok := st.Member(c.id(0)); !ok || m.Name != "n1" || m.Addr != c.cfgs[0].Members[0].Addr {
		t.Fatalf("n4 knows n1 as %+v, want its name and address (from the snapshot's directory)", m)
	}

	// n4 is a voter: two founders down, n4 and the third one still make a
	// majority of four? No: 2 of 4 is not. Stop one founder only: 3 of 4.
	down := (lead + 1) % 3
	c.stop(down)
	lead = c.leader()
	c.propose(lead, "after")
	c.waitApplied(j, append(want, "after"))
}

// TestRemoveFollowerStopsIt: a removed follower learns it, says so through
// Err, and stops; the others stop dialing it.
func TestRemoveFollowerStopsIt(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	f := c.follower(lead)
	if err := c.nodes[lead].RemoveMember(ctxFor(t, waitTimeout), c.id(f)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.nodes[f].Done():
	case <-time.After(waitTimeout):
		t.Fatal("the removed follower did not stop")
	}
	if err := c.nodes[f].Err(); !errors.Is(err, ErrRemoved) {
		t.Fatalf("removed follower's Err: got %v, want ErrRemoved", err)
	}
	c.nodes[f].Close()
	c.nodes[f] = nil
	c.waitVoters(others(3, f)...)
	eventually(t, "the leader to stop dialing the removed node", func() bool {
		_, dialed := c.nodes[lead].trans.Stats()[c.id(f)]
		return !dialed
	})
	c.propose(lead, "still works")

	// Its data directory is of no use any more: it refuses to start.
	cfg := c.cfgs[f]
	cfg.StateMachine = &recorder{}
	if n, err := Start(cfg); !errors.Is(err, ErrRemoved) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("restart of a removed node: got %v, want ErrRemoved", err)
	}
}

// others returns 0..n-1 without skip.
func others(n int, skip ...int) []int {
	var out []int
	for i := range n {
		if !slices.Contains(skip, i) {
			out = append(out, i)
		}
	}
	return out
}

// TestRemoveLeader: the leader removes itself; it hands leadership over,
// so the others go on without an election timeout, and stops. Only node 1
// has a short election timeout, so it is the first leader; the others'
// timeouts are longer than the test may wait, so only a hand-off can elect
// one of them.
func TestRemoveLeader(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) {
		if cfg.Name != "n1" {
			cfg.ElectionTicks = 10000 // 100s
		}
	})
	lead := c.leader()
	if lead != 0 {
		t.Fatalf("node %d leads, want node 1", lead+1)
	}
	if err := c.nodes[lead].RemoveMember(ctxFor(t, waitTimeout), c.id(lead)); err != nil {
		t.Fatal(err)
	}
	<-c.nodes[lead].Done()
	if err := c.nodes[lead].Err(); !errors.Is(err, ErrRemoved) {
		t.Fatalf("removed leader's Err: got %v, want ErrRemoved", err)
	}
	c.nodes[lead].Close()
	c.nodes[lead] = nil
	next := c.leader()
	c.waitVoters(1, 2)
	c.propose(next, "after")
}

// TestMembershipRefusals: bad changes are refused with a clear error and
// change nothing.
func TestMembershipRefusals(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	f := c.follower(lead)
	ln, nl := c.nodes[lead], c.nodes[f]
	ctx := ctxFor(t, waitTimeout)
	n2 := c.cfgs[1].Members[1]

	var notLeader *NotLeaderError
	if _, err := nl.AddMember(ctx, "n9", freeAddr(t), true); !errors.As(err, &notLeader) || notLeader.Leader.ID != c.id(lead) || notLeader.Leader.Addr == "" {
		t.Fatalf("add on a follower: got %v, want a NotLeaderError naming the leader", err)
	}
	for _, tc := range []struct {
		what string
		err  error
		want error
	}{
		{"add an existing name", second(ln.AddMember(ctx, "n2", freeAddr(t), false)), ErrMemberExists},
		{"add an existing address", second(ln.AddMember(ctx, "n9", n2.Addr, true)), ErrMemberExists},
		{"join under an existing voter's name", second(ln.AddJoiner(ctx, "n2", n2.Addr)), ErrMemberExists},
		{"remove a non-member", ln.RemoveMember(ctx, MemberID("n9")), ErrNotMember},
		{"promote a non-member", ln.PromoteMember(ctx, MemberID("n9")), ErrNotMember},
		{"promote a voter", ln.PromoteMember(ctx, c.id(f)), ErrAlreadyVoter},
		{"a bad name", second(ln.AddMember(ctx, "n 9", freeAddr(t), true)), nil},
		{"a bad address", second(ln.AddMember(ctx, "n9", "nohost", true)), nil},
	} {
		if tc.err == nil || (tc.want != nil && !errors.Is(tc.err, tc.want)) {
			t.Errorf("%s: got %v, want %v", tc.what, tc.err, tc.want)
		}
	}
	c.waitVoters(0, 1, 2)
	if len(ln.Members()) != 3 {
		t.Fatalf("members after refusals: %+v", ln.Members())
	}
}

func second[T any](_ T, err error) error { return err }

// TestRemoveLastVoterRefused: a one-node cluster cannot remove its voter.
func TestRemoveLastVoterRefused(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.leader()
	if err := c.nodes[0].RemoveMember(ctxFor(t, waitTimeout), c.id(0)); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("remove the last voter: got %v, want ErrLastVoter", err)
	}
}

// TestSecondChangeWhilePendingRefused: a voter added while it is down
// cannot help leave the joint configuration its addition entered, so the
// change stays under way (its caller times out saying so); a second change
// is refused meanwhile.
func TestSecondChangeWhilePendingRefused(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.leader()
	n := c.nodes[0]
	_, err := n.AddMember(ctxFor(t, 200*time.Millisecond), "n2", freeAddr(t), false)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("add a voter that is down: got %v, want a timeout waiting to leave the joint configuration", err)
	}
	if _, err := n.AddMember(ctxFor(t, waitTimeout), "n3", freeAddr(t), true); !errors.Is(err, ErrChangePending) || !errors.Is(err, raft.ErrConfChangePending) {
		t.Fatalf("a second change while one is pending: got %v, want ErrChangePending", err)
	}
}

// TestJoinAskedTwice: a joiner that asks again (it restarted before it
// recorded the answer) gets the same answer; asking as an existing voter is
// refused.
func TestJoinAskedTwice(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.leader()
	addr := freeAddr(t)
	ctx := ctxFor(t, waitTimeout)
	a, err := c.nodes[0].AddJoiner(ctx, "n2", addr)
	if err != nil || a.Role != RoleLearner || !a.Promote {
		t.Fatalf("join: %+v, %v; want a learner to promote", a, err)
	}
	b, err := c.nodes[0].AddJoiner(ctx, "n2", addr)
	if err != nil || b != a {
		t.Fatalf("join again: %+v, %v; want %+v", b, err, a)
	}
	if _, err := c.nodes[0].AddJoiner(ctx, "n2", freeAddr(t)); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("join again at another address: got %v, want ErrMemberExists", err)
	}
}

// TestRestartKeepsChangedMembership: after members were added and removed,
// every node restarts from its data directory alone and has the new
// membership, including a node that joined.
func TestRestartKeepsChangedMembership(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	j := c.addNode("n4")
	c.join(lead, j)
	c.waitVoters(0, 1, 2, 3)
	gone := c.follower(lead)
	if gone == j {
		gone = others(3, lead)[0]
	}
	if err := c.nodes[lead].RemoveMember(ctxFor(t, waitTimeout), c.id(gone)); err != nil {
		t.Fatal(err)
	}
	<-c.nodes[gone].Done()
	c.nodes[gone].Close()
	c.nodes[gone] = nil
	left := others(4, gone)
	c.waitVoters(left...)
	want := c.proposeN(c.leader(), "cmd", 5)

	for _, i := range left {
		c.stop(i)
	}
	for _, i := range left {
		cfg := Config{
			DataDir:        c.cfgs[i].DataDir,
			TickInterval:   c.cfgs[i].TickInterval,
			ElectionTicks:  c.cfgs[i].ElectionTicks,
			HeartbeatTicks: c.cfgs[i].HeartbeatTicks,
			Logger:         c.cfgs[i].Logger,
		}
		c.cfgs[i] = cfg
		c.start(i)
	}
	c.waitVoters(left...)
	lead = c.leader()
	c.propose(lead, "after restart")
	for _, i := range left {
		c.waitApplied(i, append(want, "after restart"))
		st := c.nodes[i].Status()
		if len(st.Members) != 3 || slices.ContainsFunc(st.Members, func(m MemberState) bool { return m.ID == c.id(gone) }) {
			t.Fatalf("node %d restarted with members %+v", i+1, st.Members)
		}
	}
}

// TestReplaceNodeWithLostDisk is the documented procedure: a node whose
// disk was lost is removed, and a new node joins, under the same name and
// address but with a new id, so that the lost node could never be taken for
// its successor. The cluster then has its redundancy back: it survives
// another failure.
func TestReplaceNodeWithLostDisk(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	lost := c.follower(lead)
	want := c.proposeN(lead, "before", 10)
	c.stop(lost)
	if err := os.RemoveAll(c.cfgs[lost].DataDir); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[lead].RemoveMember(ctxFor(t, waitTimeout), c.id(lost)); err != nil {
		t.Fatal(err)
	}
	j := c.addNode(c.names[lost])
	c.cfgs[j].Members[0].Addr = c.cfgs[lost].Members[lost].Addr
	c.join(lead, j)
	if c.id(j) == c.id(lost) {
		t.Fatal("the replacement has the lost node's id")
	}
	stay := others(3, lost)
	c.waitVoters(append(stay, j)...)
	c.waitApplied(j, want)

	other := stay[0]
	if other == lead {
		other = stay[1]
	}
	c.stop(other)
	c.propose(c.leader(), "after")
	c.waitApplied(j, append(want, "after"))
}

// TestStopHandsLeadershipOver: a leader that stops gracefully hands
// leadership to a voter first. Only node 1 has a short election timeout,
// so a new leader among the others can only come from the hand-over; a
// rolling restart, one Stop after another, then never waits for an
// election timeout.
func TestStopHandsLeadershipOver(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) {
		if cfg.Name != "n1" {
			cfg.ElectionTicks = 10000 // 100s
		}
	})
	if lead := c.leader(); lead != 0 {
		t.Fatalf("node %d leads, want node 1", lead+1)
	}
	want := c.proposeN(0, "before", 3)
	c.stop(0)
	lead := c.leader()
	c.propose(lead, "after")
	c.start(0)
	c.waitApplied(0, append(want, "after"))
}
