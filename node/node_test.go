package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testenv"
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage"
)

// Shared test helpers, named as the tests here have always called them.
var (
	eventually = testenv.Eventually
	freeAddr   = testenv.FreeAddr
	testLogger = testenv.Logger
)

const waitTimeout = testenv.WaitTimeout

// recorder is a StateMachine that remembers every command it applied.
type recorder struct {
	mu       sync.Mutex // guards the fields below
	applied  []string
	restores int
	// block, when set, makes Apply wait until it is closed.
	block   chan struct{}
	entered chan struct{} // receives once per blocked Apply
}

func (r *recorder) Apply(index uint64, data []byte) any {
	r.mu.Lock()
	block := r.block
	r.mu.Unlock()
	if block != nil {
		r.entered <- struct{}{}
		<-block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, string(data))
	return index
}

func (r *recorder) Snapshot() (io.WriterTo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorderView(slices.Clone(r.applied)), nil
}

// recorderView is a recorder's state frozen by Snapshot.
type recorderView []string

func (v recorderView) WriteTo(w io.Writer) (int64, error) {
	b, err := json.Marshal([]string(v))
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

func (r *recorder) Restore(rd io.Reader) error {
	var applied []string
	if err := json.NewDecoder(rd).Decode(&applied); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = applied
	r.restores++
	return nil
}

func (r *recorder) commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied)
}

func (r *recorder) restoreCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restores
}

// cluster is a set of nodes in one process, talking over loopback TCP.
type cluster struct {
	t     testing.TB
	cfgs  []Config
	names []string
	ids   []uint64
	nodes []*Node // nil while stopped
	sms   []*recorder
}

// newCluster configures size nodes; tweak adjusts each config. Nodes are
// not started.
func newCluster(t testing.TB, size int, tweak func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, nodes: make([]*Node, size), sms: make([]*recorder, size)}
	var members []Member
	for i := range size {
		members = append(members, NewMember(fmt.Sprintf("n%d", i+1), freeAddr(t)))
	}
	cluster := randomNonZero()
	for i := range size {
		cfg := Config{
			Name:            members[i].Name,
			ClusterID:       cluster,
			DataDir:         t.TempDir(),
			Members:         members,
			TickInterval:    10 * time.Millisecond,
			ElectionTicks:   20, // 200-400ms: elections stay rare on a loaded CI machine
			HeartbeatTicks:  2,
			SnapshotEntries: 1000,
			Logger:          testLogger(t).With("test_node", i+1),
		}
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.names = append(c.names, members[i].Name)
		c.ids = append(c.ids, members[i].ID)
	}
	t.Cleanup(c.closeAll)
	return c
}

// id returns node i's raft id.
func (c *cluster) id(i int) uint64 { return c.ids[i] }

func startCluster(t testing.TB, size int, tweak func(*Config)) *cluster {
	t.Helper()
	c := newCluster(t, size, tweak)
	for i := range size {
		c.start(i)
	}
	return c
}

// start starts node i with a fresh state machine (restored from its data
// directory, as after a crash).
func (c *cluster) start(i int) {
	c.t.Helper()
	c.sms[i] = &recorder{}
	c.startWith(i, c.sms[i])
}

// startWith starts node i with the state machine sm.
func (c *cluster) startWith(i int, sm StateMachine) {
	c.t.Helper()
	cfg := c.cfgs[i]
	cfg.StateMachine = sm
	n, err := Start(cfg)
	if err != nil {
		c.t.Fatalf("start node %d: %v", i+1, err)
	}
	c.nodes[i] = n
}

func (c *cluster) stop(i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.nodes[i].Stop(ctx); err != nil {
		c.t.Fatalf("stop node %d: %v", i+1, err)
	}
	c.nodes[i] = nil
}

func (c *cluster) closeAll() {
	for i, n := range c.nodes {
		if n != nil {
			if err := n.Close(); err != nil {
				c.t.Errorf("close node %d: %v", i+1, err)
			}
			c.nodes[i] = nil
		}
	}
}

// leader waits until every running node agrees on one leader in one term,
// and returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	return testenv.AgreedLeader(c.t, func() []testenv.View {
		views := make([]testenv.View, len(c.nodes))
		for i, n := range c.nodes {
			if n != nil {
				st := n.Status()
				views[i] = testenv.View{Running: true, ID: n.id.ID, Lead: st.Lead, Term: st.Term, Leading: st.Role == raft.Leader}
			}
		}
		return views
	})
}

// follower returns the index of a running node other than lead.
func (c *cluster) follower(lead int) int {
	for i, n := range c.nodes {
		if i != lead && n != nil {
			return i
		}
	}
	c.t.Fatal("no running follower")
	return -1
}

// propose proposes cmd through node i and returns the index it was applied
// at.
func (c *cluster) propose(i int, cmd string) uint64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	res, err := proposeWhenLed(ctx, c.nodes[i], cmd)
	if err != nil {
		c.t.Fatalf("propose %q through node %d: %v", cmd, i+1, err)
	}
	return res.(uint64)
}

// proposeN proposes count commands named prefix-0, prefix-1... through
// node i, one after the other, and returns them.
func (c *cluster) proposeN(i int, prefix string, count int) []string {
	c.t.Helper()
	var cmds []string
	for k := range count {
		cmd := fmt.Sprintf("%s-%d", prefix, k)
		if idx := c.propose(i, cmd); idx == 0 {
			c.t.Fatalf("propose %q: got index 0, want the entry's index", cmd)
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

// proposeWhenLed proposes cmd through n, retrying while n knows no leader.
func proposeWhenLed(ctx context.Context, n *Node, cmd string) (res any, err error) {
	err = whenLed(ctx, n, func() error {
		res, err = n.Propose(ctx, []byte(cmd))
		return err
	})
	return res, err
}

// whenLed retries f while it fails with ErrNoLeader (an election on a
// loaded machine). That error guarantees nothing was done, so a retried
// proposal cannot apply twice. It retries when n's status changes (a leader
// became known), or after a short while in case the refusal had another
// cause that ends without a status change, such as a transfer that aborted.
func whenLed(ctx context.Context, n *Node, f func() error) error {
	for {
		changed := n.StatusChanged() // before f, so a change during f is seen
		err := f()
		if !errors.Is(err, ErrNoLeader) || ctx.Err() != nil {
			return err
		}
		retry := time.NewTimer(50 * time.Millisecond)
		select {
		case <-changed:
		case <-retry.C:
		case <-ctx.Done():
		}
		retry.Stop()
	}
}

// waitApplied waits until node i's state machine holds exactly want.
func (c *cluster) waitApplied(i int, want []string) {
	c.t.Helper()
	eventually(c.t, fmt.Sprintf("node %d to apply %d commands", i+1, len(want)), func() bool {
		return slices.Equal(c.sms[i].commands(), want)
	})
}

func TestElectProposeThroughFollowerAndRead(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	f := c.follower(lead)

	want := c.proposeN(f, "cmd", 5)
	for i := range c.nodes {
		c.waitApplied(i, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	commit := c.nodes[lead].Status().Commit
	if err := whenLed(ctx, c.nodes[f], func() error { return c.nodes[f].ReadIndex(ctx) }); err != nil {
		t.Fatalf("ReadIndex on a follower: %v", err)
	}
	if got := c.nodes[f].Status().Applied; got < commit {
		t.Fatalf("after ReadIndex the follower applied %d, want at least the leader's commit %d from before the read", got, commit)
	}
}

func TestConcurrentProposalsAllApplyOnce(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				_, err := proposeWhenLed(ctx, c.nodes[(lead+w)%3], fmt.Sprintf("w%d-%d", w, i))
				cancel()
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("propose: %v", err)
	}
	eventually(t, "every node to apply every command", func() bool {
		for i := range c.nodes {
			if len(c.sms[i].commands()) != workers*each {
				return false
			}
		}
		return true
	})
	got := c.sms[0].commands()
	seen := make(map[string]bool)
	for _, cmd := range got {
		if seen[cmd] {
			t.Fatalf("command %q applied twice", cmd)
		}
		seen[cmd] = true
	}
	for i := 1; i < 3; i++ {
		if other := c.sms[i].commands(); !slices.Equal(other, got) {
			t.Fatalf("node %d applied %v, node 1 applied %v: the orders differ", i+1, other, got)
		}
	}
}

func TestRestartedNodeCatchesUp(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	f := c.follower(lead)
	c.propose(lead, "before")
	c.waitApplied(f, []string{"before"})
	before := c.nodes[f].Status()
	c.stop(f)

	want := append([]string{"before"}, c.proposeN(lead, "while-down", 10)...)
	c.start(f)
	if st := c.nodes[f].Status(); st.Term < before.Term {
		t.Fatalf("restarted node is at term %d, want at least the %d it had persisted", st.Term, before.Term)
	}
	c.waitApplied(f, want)
}

func TestSnapshotInstalledOnLaggingNode(t *testing.T) {
	c := startCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 5
		cfg.CatchUpEntries = -1 // compact everything, so only a snapshot can help
	})
	lead := c.leader()
	f := c.follower(lead)
	c.propose(lead, "first")
	c.waitApplied(f, []string{"first"})
	c.stop(f)

	want := append([]string{"first"}, c.proposeN(lead, "cmd", 20)...)
	eventually(t, "the leader to compact past the stopped follower", func() bool {
		first, err := c.nodes[lead].store.FirstIndex()
		return err == nil && first > 3
	})
	c.start(f)
	c.waitApplied(f, want)
	if c.sms[f].restoreCount() == 0 {
		t.Fatal("the lagging node caught up without installing a snapshot; the test did not test that")
	}
	// And it keeps following after the snapshot.
	c.propose(lead, "after")
	c.waitApplied(f, append(want, "after"))
}

func TestRestartRestoresFromOwnSnapshot(t *testing.T) {
	c := startCluster(t, 1, func(cfg *Config) { cfg.SnapshotEntries = 3 })
	c.leader()
	want := c.proposeN(0, "cmd", 10)
	c.stop(0)
	c.start(0)
	if c.sms[0].restoreCount() == 0 {
		t.Fatal("restart did not restore the state machine from its snapshot")
	}
	c.waitApplied(0, want)
}

func TestLeaderKilledNewLeaderElected(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	oldTerm := c.nodes[lead].Status().Term
	if err := c.nodes[lead].Close(); err != nil {
		t.Fatal(err)
	}
	c.nodes[lead] = nil
	next := c.leader()
	if st := c.nodes[next].Status(); next == lead || st.Term <= oldTerm {
		t.Fatalf("new leader node %d at term %d, want another node at a term above %d", next+1, st.Term, oldTerm)
	}
	c.propose(c.leader(), "after failover")
	c.start(lead)
	c.waitApplied(lead, []string{"after failover"})
	if st := c.nodes[lead].Status(); st.Role != raft.Follower {
		t.Fatalf("restarted old leader is %v, want follower", st.Role)
	}
}

func TestProposeWithoutLeaderFailsFast(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.start(0) // its peers never start: no leader can be elected
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := c.nodes[0].Propose(ctx, []byte("x"))
	if !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("propose without a leader: got %v, want ErrNoLeader and not ErrOutcomeUnknown", err)
	}
	if ctx.Err() != nil {
		t.Fatal("propose without a leader waited for the deadline instead of failing fast")
	}
	if err := c.nodes[0].ReadIndex(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("read without a leader: got %v, want ErrNoLeader", err)
	}
}

func TestProposeOutcomeUnknownOnExpiry(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.leader()
	sm := c.sms[0]
	sm.mu.Lock()
	sm.block, sm.entered = make(chan struct{}), make(chan struct{}, 2)
	sm.mu.Unlock()

	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_, err := c.nodes[0].Propose(ctx, []byte("first"))
		first <- err
	}()
	<-sm.entered // "first" is being applied, and stays so

	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() {
		_, err := c.nodes[0].Propose(ctx, []byte("second"))
		second <- err
	}()
	commit := c.nodes[0].Status().Commit
	eventually(t, "the second proposal to commit", func() bool { return c.nodes[0].Status().Commit > commit })
	cancel()
	if err := <-second; !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled committed proposal: got %v, want ErrOutcomeUnknown wrapping context.Canceled", err)
	}
	close(sm.block)
	<-sm.entered // the second one, which was applied after all
	if err := <-first; err != nil {
		t.Fatalf("first proposal: %v", err)
	}
	c.waitApplied(0, []string{"first", "second"})
}

func TestStoppedNodeRefusesWork(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.leader()
	n := c.nodes[0]
	c.stop(0)
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := n.Propose(context.Background(), []byte("x")); !errors.Is(err, ErrStopped) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("propose on a stopped node: got %v, want ErrStopped alone", err)
	}
	if err := n.ReadIndex(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("read on a stopped node: got %v, want ErrStopped", err)
	}
}

func TestTransferLeadership(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	to := c.follower(lead)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.nodes[lead].TransferLeadership(ctx, c.id(to)); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	if got := c.leader(); got != to {
		t.Fatalf("leader after transfer is node %d, want node %d", got+1, to+1)
	}
}

// TestTransferAskedOfFollowerForAnother asks follower B to hand leadership
// to follower A over real transports, which refuse a message sent under
// another node's name: B forwards the request under its own.
func TestTransferAskedOfFollowerForAnother(t *testing.T) {
	c := startCluster(t, 3, nil)
	lead := c.leader()
	b := c.follower(lead)
	a := 3 - lead - b
	changed := c.nodes[a].StatusChanged()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.nodes[b].TransferLeadership(ctx, c.id(a)); err != nil {
		t.Fatalf("transfer leadership asked of node %d for node %d: %v", b+1, a+1, err)
	}
	if got := c.leader(); got != a {
		t.Fatalf("leader after transfer is node %d, want node %d", got+1, a+1)
	}
	select {
	case <-changed:
	default:
		t.Fatal("node A's StatusChanged channel is still open after it became leader")
	}
}

func TestStartRefusesAnotherNodesDirectory(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.start(0)
	c.stop(0)
	cfg := c.cfgs[1]
	cfg.DataDir = c.cfgs[0].DataDir
	cfg.StateMachine = &recorder{}
	n, err := Start(cfg)
	if err == nil {
		n.Close()
		t.Fatal("node 2 started in node 1's data directory")
	}
	if !errors.Is(err, ErrMembershipMismatch) {
		t.Fatalf("start in another node's directory: got %v, want ErrMembershipMismatch", err)
	}
}

func TestStartFailsOnBusyPeerAddress(t *testing.T) {
	c := newCluster(t, 1, nil)
	ln, err := net.Listen("tcp", c.cfgs[0].Members[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := c.cfgs[0]
	cfg.StateMachine = &recorder{}
	if n, err := Start(cfg); err == nil {
		n.Close()
		t.Fatal("node started on a peer address in use")
	}
}

func TestNoGoroutineLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	c := startCluster(t, 3, func(cfg *Config) { cfg.SnapshotEntries = 3 })
	lead := c.leader()
	c.proposeN(c.follower(lead), "cmd", 10)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := whenLed(ctx, c.nodes[c.follower(lead)], func() error { return c.nodes[c.follower(lead)].ReadIndex(ctx) }); err != nil {
		t.Fatal(err)
	}
	for i := range c.nodes {
		c.stop(i)
	}
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestOversizeProposalRefused(t *testing.T) {
	c := startCluster(t, 1, func(cfg *Config) { cfg.MaxProposalBytes = 1 << 10 })
	c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.nodes[0].Propose(ctx, make([]byte, 1<<10+1)); !errors.Is(err, ErrProposalTooLarge) {
		t.Fatalf("oversize proposal: got %v, want ErrProposalTooLarge", err)
	}
	c.propose(0, "still works")
}

// failingStore makes Save fail once fail is set, as a dying disk would.
type failingStore struct {
	logStore
	fail *atomic.Bool
}

var errDiskGone = errors.New("disk gone")

func (s failingStore) Save(hs raftpb.HardState, ents []raftpb.Entry) error {
	if s.fail.Load() {
		return errDiskGone
	}
	return s.logStore.Save(hs, ents)
}

func TestFailedWriteStopsTheNode(t *testing.T) {
	c := newCluster(t, 1, nil)
	cfg := c.cfgs[0].withDefaults()
	cfg.StateMachine = &recorder{}
	id, err := openIdentity(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.Open(cfg.DataDir, storage.Options{NodeID: id.ID, ClusterID: id.ClusterID})
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	n, err := start(cfg, id, failingStore{store, &fail}, new(stats))
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[0] = n
	c.leader()
	c.propose(0, "durable")

	fail.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := n.Propose(ctx, []byte("lost")); !errors.Is(err, ErrStopped) {
		t.Fatalf("propose when the disk fails: got %v, want ErrStopped", err)
	}
	<-n.Done()
	if !errors.Is(n.Err(), errDiskGone) {
		t.Fatalf("Err() = %v, want the write failure", n.Err())
	}
	if err := n.Close(); !errors.Is(err, errDiskGone) {
		t.Fatalf("Close() = %v, want the write failure", err)
	}
	c.nodes[0] = nil
}

// TestProposeCancelledInQueueWrapsCtxErr plays the loop by hand: a proposal
// whose caller gave up while it waited in the inbox is refused with an error
// that wraps the context's, so that a caller retrying after its own deadline
// (as the server does) recognises it. The context reports its error without
// closing Done, so that Propose hears the loop's refusal rather than its own
// context.
func TestProposeCancelledInQueueWrapsCtxErr(t *testing.T) {
	n := &Node{
		cfg:     Config{MaxProposalBytes: 1 << 10},
		inbox:   make(chan event, 1),
		pending: newPending(0),
		stopc:   make(chan struct{}),
	}
	ctx := &errOnlyCtx{Context: context.Background()}
	errc := make(chan error, 1)
	go func() {
		_, err := n.Propose(ctx, []byte("x"))
		errc <- err
	}()
	ev := <-n.inbox
	ctx.cancelled.Store(true)
	closed := make(chan struct{})
	close(closed)
	ev.cancelled = closed // as the loop would see it
	n.step(ev)
	if err := <-errc; !errors.Is(err, context.Canceled) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("proposal cancelled in the queue: got %v, want an error wrapping context.Canceled alone", err)
	}
}

// errOnlyCtx reports context.Canceled once cancelled is set, but its Done
// never closes.
type errOnlyCtx struct {
	context.Context
	cancelled atomic.Bool
}

func (c *errOnlyCtx) Err() error {
	if c.cancelled.Load() {
		return context.Canceled
	}
	return nil
}

// TestIDsAreStable pins the ids derived from names: data directories and
// peers' handshakes hold them, so a change would orphan every cluster.
func TestIDsAreStable(t *testing.T) {
	if got := MemberID("n1"); got != 0x8b37b07b558d4c0 {
		t.Fatalf("MemberID(n1) = %#x, want 0x8b37b07b558d4c0", got)
	}
	ms := []Member{NewMember("n2", "127.0.0.1:7002"), NewMember("n1", "127.0.0.1:7001")}
	if got := foundingHash(ms); got != 0x576df8a95ba4a4df {
		t.Fatalf("foundingHash = %#x, want 0x576df8a95ba4a4df", got)
	}
}
