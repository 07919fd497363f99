package sim

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/raft/readydrive"
)

// TickInterval is the simulated time between two ticks of a node's clock.
// Message and disk delays are drawn in the same units.
const TickInterval = 100

// Result is the outcome of one run.
type Result struct {
	Seed    uint64
	Options Options
	Stats   Stats
	// Fingerprint hashes every step taken: two runs of one seed must agree.
	Fingerprint uint64
	// Failure is nil when every check passed.
	Failure *Failure
}

// Stats count what happened in a run.
type Stats struct {
	Steps, Elections, Commits      uint64
	Crashes, Partitions, Snapshots uint64
	// Installed counts snapshots a follower received and installed;
	// Reads counts read indexes answered; Ops counts kv client
	// operations answered.
	Installed, Reads, Ops uint64
	// Changes counts membership changes applied (the bootstrap aside,
	// leaving a joint configuration included); Joined counts nodes that
	// became members after the start, Removed members that the final
	// configuration no longer lists.
	Changes, Joined, Removed uint64
	// RecoveryTicks is how long, after healing, the first proposal took to
	// commit.
	RecoveryTicks int64
}

// Add accumulates o into s.
func (s *Stats) Add(o Stats) {
	s.Steps += o.Steps
	s.Elections += o.Elections
	s.Commits += o.Commits
	s.Crashes += o.Crashes
	s.Partitions += o.Partitions
	s.Snapshots += o.Snapshots
	s.Installed += o.Installed
	s.Reads += o.Reads
	s.Ops += o.Ops
	s.Changes += o.Changes
	s.Joined += o.Joined
	s.Removed += o.Removed
	s.RecoveryTicks = max(s.RecoveryTicks, o.RecoveryTicks)
}

// Failure is a broken rule together with what led to it.
type Failure struct {
	*Violation
	Step  uint64
	Tick  float64
	Trace string // the last steps
	State string // every node at the time of the failure
}

// Report formats a failure for a human: the rule, the seed, the command
// that replays it, the options, the cluster's state and the trace.
func (r *Result) Report(replay string) string {
	if r.Failure == nil {
		return fmt.Sprintf("seed %d passed", r.Seed)
	}
	f := r.Failure
	var sb strings.Builder
	fmt.Fprintf(&sb, "VIOLATION of %s at step %d (tick %.2f): %s\n", f.Rule, f.Step, f.Tick, f.Detail)
	fmt.Fprintf(&sb, "seed: %d\nreplay: %s\n", r.Seed, replay)
	fmt.Fprintf(&sb, "options: %s\n", r.Options)
	fmt.Fprintf(&sb, "state:\n%s", f.State)
	fmt.Fprintf(&sb, "last %d steps:\n%s", r.Options.TraceSteps, f.Trace)
	return sb.String()
}

func (o Options) String() string {
	c := o.Raft
	s := fmt.Sprintf("%d nodes, mix %q, election %d ticks, heartbeat %d, prevote=%t checkquorum=%t, msg %dB x %d inflight, %d chaos ticks",
		o.Nodes, o.Mix.Name, c.ElectionTicks, c.HeartbeatTicks, c.PreVote, c.CheckQuorum, c.MaxSizePerMsg, c.MaxInflightMsgs, o.ChaosTicks)
	if o.ChangeEvery > 0 {
		s += fmt.Sprintf(", membership change every %d ticks (up to %d joiners)", o.ChangeEvery, o.Joiners)
		if o.MajorityChanges {
			s += ", majorities moved at once"
		}
	}
	if o.Clients > 0 {
		s += fmt.Sprintf(", %d kv clients", o.Clients)
	}
	if c.Knobs != (raft.TestingKnobs{}) {
		s += fmt.Sprintf(", BROKEN ON PURPOSE: %+v", c.Knobs)
	}
	if o.StaleReads {
		s += ", BROKEN ON PURPOSE: stale reads"
	}
	if o.EarlyWrites {
		s += ", BROKEN ON PURPOSE: writes answered before they commit"
	}
	return s
}

// Run simulates one cluster under opts, driven by seed, and checks it.
func Run(seed uint64, opts Options) Result {
	c := newCluster(seed, opts)
	c.run()
	if c.check.err == nil && len(c.clients) > 0 {
		c.checkHistory()
	}
	res := Result{Seed: seed, Options: opts, Stats: c.stats, Fingerprint: c.fingerprint}
	res.Stats.Steps = c.step
	res.Stats.Elections = uint64(len(c.check.leaders))
	res.Stats.Commits = uint64(len(c.check.committed))
	res.Stats.Changes = c.check.changes
	for id := range c.check.members {
		if id > uint64(opts.Nodes) {
			res.Stats.Joined++
		}
		if !isMember(c.check.current(), id) {
			res.Stats.Removed++
		}
	}
	if v := c.check.err; v != nil {
		res.Failure = &Failure{Violation: v, Step: c.step, Tick: float64(c.now) / TickInterval, Trace: c.trace.String(), State: c.describe()}
	}
	return res
}

// cluster is the simulated world: nodes, network, clock and scheduler.
type cluster struct {
	opts  Options
	rng   *rand.Rand // the run's only source of randomness
	now   int64      // simulated time
	step  uint64     // events carried out so far
	queue eventQueue
	net   *Network
	// nodes are every node that exists or may join, by id: founders
	// first, then the joiners' slots.
	nodes []*node
	check *checker
	trace *trace
	stats Stats
	// fingerprint hashes every step, to prove replays identical.
	fingerprint uint64

	// Faults stop at healAt; the current partition heals at
	// partitionEnds (0: none) and the next starts at nextPartition.
	healAt                       int64
	healed                       bool
	partitionEnds, nextPartition int64

	// Clients. seq numbers their requests (proposal payloads, read ids).
	// pending maps the proposals clients wait for to when they were made:
	// clients have bounded patience and concurrency, as real ones do, so
	// a slow configuration is not buried under an endless backlog.
	// markers maps the data of each proposal made after healing to the
	// nodes (a bitmask) that applied it; committed is set once one reached
	// a majority of the voters, live once one reached every member.
	seq             uint64
	pending         map[uint64]int64
	markers         map[string]uint64
	committed, live bool

	// clients of the kv store and the history of their operations
	// (clients.go).
	clients []*client
	history []porcupine.Operation

	route []int64 // scratch for Network.Route
	wire  []byte  // scratch for encoding messages
}

func newCluster(seed uint64, opts Options) *cluster {
	slots := opts.Nodes + opts.Joiners
	c := &cluster{
		opts:    opts,
		rng:     seededRand(seed, streamRun),
		net:     NewNetwork(slots, opts.Mix.Link),
		trace:   newTrace(opts.TraceSteps),
		markers: map[string]uint64{},
		pending: map[uint64]int64{},
		healAt:  int64(opts.ChaosTicks) * TickInterval,
	}
	disks := make([]*raft.MemoryStorage, slots)
	for i := range slots {
		disks[i] = raft.NewMemoryStorage()
		c.nodes = append(c.nodes, &node{
			id:     uint64(i + 1),
			disk:   disks[i],
			sm:     opts.NewStateMachine(),
			period: TickInterval - 5 + c.rng.Int64N(11), // clocks drift apart
		})
	}
	c.check = newChecker(disks)
	c.bootstrap()
	c.schedule(event{at: TickInterval, kind: evChaos})
	c.schedule(event{at: c.rng.Int64N(opts.Mix.ProposeEvery + 1), kind: evPropose})
	if opts.Mix.ReadEvery > 0 {
		c.schedule(event{at: c.rng.Int64N(opts.Mix.ReadEvery + 1), kind: evRead})
	}
	c.schedule(event{at: c.healAt, kind: evHeal})
	c.startClients()
	c.schedule(event{at: c.healAt + int64(opts.LivenessTicks)*TickInterval, kind: evDeadline})
	c.schedule(event{at: c.healAt + int64(opts.LivenessTicks+opts.CatchUpTicks)*TickInterval, kind: evCatchUpDeadline})
	return c
}

// run processes events until a rule breaks or the cluster proves live.
func (c *cluster) run() {
	for c.check.err == nil && !c.live {
		if c.step >= c.opts.MaxSteps {
			c.check.failf(RuleLiveness, "no recovery after %d steps: the cluster never settles", c.step)
			return
		}
		ev := c.queue.pop()
		c.now = ev.at
		if c.dispatch(ev) {
			c.check.endStep()
		}
		c.queue.release(ev)
	}
}

type eventKind uint8

const (
	evTick            eventKind = iota // a node's clock ticks
	evDeliver                          // msg arrives at msg.To
	evLocal                            // the runtime reports to its own core (MsgUnreachable, MsgSnapStatus)
	evReady                            // a node's runtime takes the core's pending Ready
	evPersist                          // ... persists it and sends what waited for that
	evApply                            // ... applies it and calls Advance
	evPropose                          // a client proposes at a random node
	evRead                             // a client asks a random node for a read index
	evClient                           // a kv client starts an operation or retries it (node: the client)
	evChaos                            // once a tick: crashes, partitions, compactions...
	evRestart                          // a crashed node comes back
	evHeal                             // faults end
	evDeadline                         // a proposal had to commit by now
	evCatchUpDeadline                  // every node had to apply it by now
)

type event struct {
	at   int64
	seq  uint64 // ties in time are broken by scheduling order
	kind eventKind
	node uint64
	inc  uint64 // for node events: the incarnation they belong to
	msg  raftpb.Message
}

func (c *cluster) schedule(ev event) {
	ev.seq = c.queue.seq
	c.queue.seq++
	c.queue.push(ev)
}

// paused defers an event for a paused node until the pause ends, and
// reports whether it did. A paused process does nothing at all: its clock
// stops (a single tick fires when it wakes up) and messages wait for it,
// then arrive in a burst, in order.
func (c *cluster) paused(ev *event) bool {
	var id uint64
	switch ev.kind {
	case evTick, evLocal, evReady, evPersist, evApply:
		id = ev.node
	case evDeliver:
		id = ev.msg.To
	default:
		return false
	}
	n := c.nodes[id-1]
	if n.pausedUntil <= c.now {
		return false
	}
	ev.at = n.pausedUntil
	c.schedule(*ev)
	return true
}

// alive returns the node an event is for, or nil if the event is stale: the
// node crashed since it was scheduled.
func (c *cluster) alive(ev *event) *node {
	n := c.nodes[ev.node-1]
	if n.core == nil || n.inc != ev.inc {
		return nil
	}
	return n
}

// dispatch carries out one event and reports whether it was a step (stale
// events are not).
func (c *cluster) dispatch(ev *event) bool {
	if c.paused(ev) {
		return false
	}
	var n *node
	switch ev.kind {
	case evTick, evLocal, evReady, evPersist, evApply:
		if n = c.alive(ev); n == nil {
			return false
		}
	case evRestart:
		if n = c.nodes[ev.node-1]; n.core != nil || n.inc != ev.inc {
			return false
		}
	case evClient:
		if c.clients[ev.node-1].gen != ev.inc {
			return false // the operation it was to retry was answered
		}
	}
	c.step++
	c.fingerprint = mix64(c.fingerprint, uint64(ev.at), uint64(ev.kind), ev.node,
		uint64(ev.msg.Type), ev.msg.From, ev.msg.To, ev.msg.Term, ev.msg.Index)
	switch ev.kind {
	case evTick:
		c.line(traceLine{kind: lineTick, node: n.id})
		n.core.Tick()
		c.touched(n)
		c.schedule(event{at: c.now + n.period, kind: evTick, node: n.id, inc: n.inc})
	case evDeliver:
		c.deliver(ev.msg)
	case evLocal:
		c.stepCore(n, ev.msg)
	case evReady:
		c.takeReady(n)
	case evPersist, evApply:
		c.note(n.id, "ready (async): %s...", n.drive.Next())
		c.driveReady(n)
	case evPropose:
		c.propose(nil, false)
		c.schedule(event{at: c.now + 1 + c.rng.Int64N(2*c.opts.Mix.ProposeEvery), kind: evPropose})
	case evRead:
		c.read()
		c.schedule(event{at: c.now + 1 + c.rng.Int64N(2*c.opts.Mix.ReadEvery), kind: evRead})
	case evClient:
		c.clientAct(c.clients[ev.node-1])
	case evChaos:
		c.chaos()
		c.schedule(event{at: c.now + TickInterval, kind: evChaos})
	case evRestart:
		c.start(n)
	case evHeal:
		c.heal()
	case evDeadline:
		if !c.committed {
			c.check.failf(RuleLiveness, "%d ticks after the faults healed, no new proposal has committed", c.opts.LivenessTicks)
		}
	case evCatchUpDeadline:
		c.check.failf(RuleLiveness, "%d ticks after a new proposal committed, nodes %v have still not applied it", c.opts.CatchUpTicks, c.lagging())
	}
	return true
}

func (c *cluster) line(l traceLine) {
	l.step, l.at = c.step, c.now
	c.trace.add(l)
}

func (c *cluster) note(id uint64, format string, args ...any) {
	c.line(traceLine{kind: lineNote, node: id, note: fmt.Sprintf(format, args...)})
}

// ---- network ----

// send puts a node's messages on the wire. Each goes through the real
// encoding, as a transport would, so nothing is shared with the receiver.
func (c *cluster) send(n *node, msgs []raftpb.Message) {
	for i := range msgs {
		c.wire = msgs[i].MarshalAppend(c.wire[:0])
		m, err := raftpb.UnmarshalMessage(c.wire)
		if err != nil {
			c.check.failf(RuleContract, "node %d sent %v, which does not survive encoding: %v", n.id, msgs[i], err)
			return
		}
		if m.To == 0 || m.To > uint64(len(c.nodes)) {
			continue // the checker reported it
		}
		fate := ""
		peerDown := c.nodes[m.To-1].core == nil
		c.route = c.route[:0]
		if !peerDown {
			c.route = c.net.Route(c.rng, n.id, m.To, c.route)
		}
		switch {
		case peerDown:
			fate = "peer down"
		case c.net.Blocked(n.id, m.To):
			fate = "cut"
		case len(c.route) == 0:
			fate = "lost"
		case len(c.route) == 2:
			fate = "duplicated"
		}
		c.line(traceLine{kind: lineSend, node: n.id, msg: m, note: fate})
		for _, d := range c.route {
			c.schedule(event{at: c.now + d, kind: evDeliver, msg: m})
		}
		if len(c.route) == 0 {
			c.lost(n, m, peerDown || c.net.Blocked(n.id, m.To))
		}
	}
}

// lost tells the sender's core what its transport would notice about a
// message that never arrived: a broken connection, a failed snapshot.
func (c *cluster) lost(n *node, m raftpb.Message, unreachable bool) {
	if m.Type == raftpb.MsgSnap {
		c.reportSnapshot(m, true)
	} else if unreachable && c.rng.IntN(8) == 0 {
		c.schedule(event{at: c.now + 1 + c.rng.Int64N(TickInterval), kind: evLocal, node: n.id, inc: n.inc,
			msg: raftpb.Message{Type: raftpb.MsgUnreachable, From: m.To, To: n.id}})
	}
}

func (c *cluster) reportSnapshot(m raftpb.Message, failed bool) {
	sender := c.nodes[m.From-1]
	if sender.core == nil {
		return
	}
	c.schedule(event{at: c.now + 1 + c.rng.Int64N(10), kind: evLocal, node: sender.id, inc: sender.inc,
		msg: raftpb.Message{Type: raftpb.MsgSnapStatus, From: m.To, To: sender.id, Reject: failed}})
}

func (c *cluster) deliver(m raftpb.Message) {
	n := c.nodes[m.To-1]
	switch {
	case n.core == nil:
		c.line(traceLine{kind: lineDeliver, node: n.id, msg: m, note: "lost: node down"})
	case c.net.Blocked(m.From, m.To):
		c.line(traceLine{kind: lineDeliver, node: n.id, msg: m, note: "lost: link cut"})
	default:
		c.stepCore(n, m)
		return
	}
	if m.Type == raftpb.MsgSnap {
		c.reportSnapshot(m, true)
	}
}

// ---- clients and faults ----

// randomLive returns a random running node, or nil if all are down.
func (c *cluster) randomLive() *node {
	start := c.rng.IntN(len(c.nodes))
	for i := range c.nodes {
		if n := c.nodes[(start+i)%len(c.nodes)]; n.core != nil {
			return n
		}
	}
	return nil
}

// Client limits: proposals waiting at once, and how long a client waits.
const (
	maxPending      = 32
	patienceInTicks = 50
)

// propose submits client proposals at a random node (a burst of them now
// and then, to exercise batching), or at n if given. A marker is the one
// proposal after healing that must reach every node.
func (c *cluster) propose(n *node, marker bool) {
	if n == nil {
		if n = c.randomLive(); n == nil {
			return
		}
	}
	count := 1
	if !marker && c.rng.IntN(10) == 0 {
		count = 2 + c.rng.IntN(20)
	}
	if !marker && len(c.pending)+count > maxPending {
		for seq, at := range c.pending {
			if at+patienceInTicks*TickInterval < c.now {
				delete(c.pending, seq) // the client gave up
			}
		}
		count = min(count, maxPending-len(c.pending))
	}
	for range count {
		data := c.payload()
		c.pending[c.seq] = c.now
		err := n.core.Propose(data)
		res := "ok"
		if err != nil {
			res = err.Error()
		}
		c.note(n.id, "propose #%d (%d bytes): %s", binary.BigEndian.Uint64(data), len(data), res)
		if marker {
			c.markers[string(data)] = 0
		}
	}
	c.touched(n)
}

// payload is a unique proposal: a sequence number, then padding that is
// now and then large enough to hit the message size limits.
func (c *cluster) payload() []byte {
	c.seq++
	pad := c.rng.IntN(24)
	if c.rng.IntN(20) == 0 {
		pad = 200 + c.rng.IntN(800)
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+pad), c.seq)
	for range pad {
		b = append(b, byte(c.rng.Uint32()))
	}
	return b
}

func (c *cluster) read() {
	n := c.randomLive()
	if n == nil {
		return
	}
	c.seq++
	c.check.readIssued(c.seq)
	c.note(n.id, "read index request #%d (commit floor %d)", c.seq, c.check.maxCommit)
	n.core.ReadIndex(binary.BigEndian.AppendUint64(nil, c.seq))
	c.touched(n)
}

// chaos runs once a tick and rolls the dice for each kind of fault. After
// healing it instead keeps proposing until a proposal is applied everywhere.
func (c *cluster) chaos() {
	m := &c.opts.Mix
	if c.healed {
		c.propose(c.leaderOrRandom(), true)
		return
	}
	if len(m.Partitions) > 0 || c.partitionEnds != 0 {
		c.partitions()
	}
	if m.CrashEvery > 0 && c.rng.IntN(m.CrashEvery) == 0 {
		if n := c.nodeOrRandom(c.victim()); n != nil {
			if c.rng.Float64() < m.CrashInReady {
				n.crashArmed = true // strikes inside its next Ready
			} else {
				c.crash(n, "between steps")
			}
		}
	}
	if m.PauseEvery > 0 && c.rng.IntN(m.PauseEvery) == 0 {
		if n := c.nodeOrRandom(c.victim()); n != nil && n.pausedUntil <= c.now {
			ticks := 1 + c.rng.Int64N(int64(3*c.opts.Raft.ElectionTicks))
			n.pausedUntil = c.now + ticks*TickInterval
			c.note(n.id, "PAUSE for %d ticks", ticks)
		}
	}
	if m.CompactEvery > 0 && c.rng.IntN(m.CompactEvery) == 0 {
		if n := c.randomLive(); n != nil {
			c.compact(n)
		}
	}
	if m.LeaderEvery > 0 && c.rng.IntN(m.LeaderEvery) == 0 {
		if n := c.randomLive(); n != nil {
			c.disturb(n)
		}
	}
	if c.opts.ChangeEvery > 0 && c.rng.IntN(c.opts.ChangeEvery) == 0 {
		c.changeMembership()
	}
}

// partitions alternates a connected network and partitions. A partition
// lasts up to a few election timeouts: long enough to depose a leader and
// elect another, short enough for the sides to meet again with diverging
// logs.
func (c *cluster) partitions() {
	m := &c.opts.Mix
	switch {
	case c.partitionEnds != 0 && c.now >= c.partitionEnds:
		c.net.Heal()
		c.note(0, "NETWORK healed")
		c.partitionEnds = 0
		c.nextPartition = c.now + c.rng.Int64N(int64(2*m.PartitionEvery)+1)*TickInterval
	case c.partitionEnds == 0 && c.now >= c.nextPartition && len(m.Partitions) > 0:
		c.stats.Partitions++
		kind := m.Partitions[c.rng.IntN(len(m.Partitions))]
		desc := c.net.Partition(c.rng, kind, c.victim())
		for kind == OneWay && c.rng.IntN(2) == 0 {
			desc += ", " + c.net.Partition(c.rng, kind, c.victim())
		}
		c.note(0, "NETWORK %s", desc)
		c.partitionEnds = c.now + (1+c.rng.Int64N(int64(4*c.opts.Raft.ElectionTicks)))*TickInterval
	}
}

// splitOff cuts ids off from the rest of the cluster for a while, as a
// partition would.
func (c *cluster) splitOff(ids []uint64, why string) {
	c.stats.Partitions++
	c.note(0, "NETWORK %s (%s)", c.net.SplitOff(ids), why)
	c.partitionEnds = c.now + (1+c.rng.Int64N(int64(4*c.opts.Raft.ElectionTicks)))*TickInterval
}

// compact snapshots a node's state machine and drops the log it covers,
// keeping a few entries so that slightly lagging followers can still be
// sent entries rather than a snapshot.
func (c *cluster) compact(n *node) {
	first, _ := n.disk.FirstIndex()
	if snap, _ := n.disk.Snapshot(); n.applied <= snap.Metadata.Index || n.applied < first {
		return
	}
	data, err := n.sm.Snapshot()
	if err != nil {
		c.check.failf(RuleContract, "node %d's state machine cannot snapshot: %v", n.id, err)
		return
	}
	snap, err := n.disk.CreateSnapshot(n.applied, &n.conf, data)
	if err != nil {
		c.check.failf(RuleContract, "node %d cannot snapshot at applied index %d: %v", n.id, n.applied, err)
		return
	}
	c.check.snapshot(n.id, snap)
	to := n.applied - min(n.applied-first, uint64(c.rng.IntN(5)))
	if to >= first {
		if err := n.disk.Compact(to); err != nil {
			c.check.failf(RuleContract, "node %d cannot compact to %d: %v", n.id, to, err)
		}
	}
	c.stats.Snapshots++
	c.note(n.id, "SNAPSHOT at %d, log compacted up to %d", n.applied, to)
}

// disturb forces a leadership change: a transfer if n leads (to another
// member: a learner must refuse), otherwise an immediate campaign.
func (c *cluster) disturb(n *node) {
	cs := n.core.ConfState()
	others := slices.DeleteFunc(slices.Concat(cs.Voters, cs.Learners), func(id uint64) bool { return id == n.id })
	if n.role == raft.Leader && len(others) > 0 {
		to := others[c.rng.IntN(len(others))]
		c.note(n.id, "TRANSFER leadership to %d", to)
		n.core.TransferLeadership(to)
	} else {
		err := n.core.Campaign()
		c.note(n.id, "CAMPAIGN (%v)", err)
	}
	c.touched(n)
}

// leader returns the id of the live node that believes it leads in the
// highest term, or 0. (A deposed leader may not know it yet.)
func (c *cluster) leader() uint64 {
	var id, term uint64
	for _, n := range c.nodes {
		if n.core != nil && n.role == raft.Leader && (id == 0 || n.term > term) {
			id, term = n.id, n.term
		}
	}
	return id
}

func (c *cluster) leaderOrRandom() *node { return c.nodeOrRandom(c.leader()) }

func (c *cluster) nodeOrRandom(id uint64) *node {
	if id != 0 && c.nodes[id-1].core != nil {
		return c.nodes[id-1]
	}
	return c.randomLive()
}

// victim picks the target of a fault: half the time the leader, since
// faults that hit it are the ones that force elections over diverging
// logs; otherwise 0 (anyone).
func (c *cluster) victim() uint64 {
	if c.rng.IntN(2) == 0 {
		return c.leader()
	}
	return 0
}

// heal ends the faults: the network reconnects and stops losing messages,
// and every crashed node restarts. From now on the cluster must recover.
func (c *cluster) heal() {
	c.healed = true
	c.net.Heal()
	c.net.Faults = LinkFaults{MinDelay: c.opts.Mix.Link.MinDelay, MaxDelay: c.opts.Mix.Link.MaxDelay}
	c.note(0, "HEAL: network whole and lossless, crashed nodes restart; a new proposal must commit within %d ticks, then reach every member", c.opts.LivenessTicks)
	for _, n := range c.nodes {
		n.crashArmed, n.pausedUntil = false, 0
		n.crashAt = readydrive.Idle
		if n.born && n.core == nil {
			c.start(n)
		}
	}
}

// lagging lists the nodes missing from the most applied post-heal proposal.
func (c *cluster) lagging() []uint64 {
	var best uint64
	for _, mask := range c.markers {
		if bits.OnesCount64(mask) > bits.OnesCount64(best) {
			best = mask
		}
	}
	var out []uint64
	for id := range uint64(len(c.nodes)) {
		if members(c.check.current())&^best&(1<<id) != 0 {
			out = append(out, id+1)
		}
	}
	return out
}

// describe prints every node's state for a failure report.
func (c *cluster) describe() string {
	var sb strings.Builder
	for _, n := range c.nodes {
		first, _ := n.disk.FirstIndex()
		last, _ := n.disk.LastIndex()
		lastTerm, _ := n.disk.Term(last)
		hs, _, _ := n.disk.InitialState()
		fmt.Fprintf(&sb, "  n%d: ", n.id)
		switch {
		case !n.born:
			sb.WriteString("never started\n")
			continue
		case n.core == nil:
			sb.WriteString("DOWN")
		default:
			st := n.core.Status()
			fmt.Fprintf(&sb, "%v term %d vote %d lead %d commit %d applied %d config %v", st.Role, st.Term, st.Vote, st.Lead, st.Commit, st.Applied, st.Config)
			if st.Removed {
				sb.WriteString(" REMOVED")
			}
		}
		fmt.Fprintf(&sb, "; disk: log %d..%d (last term %d), hard state t%d vote %d commit %d; state machine at %d\n",
			first, last, lastTerm, hs.Term, hs.Vote, hs.Commit, n.applied)
	}
	fmt.Fprintf(&sb, "  configuration in effect (entry %d): %v\n", c.check.latestConf, c.check.current())
	fmt.Fprintf(&sb, "  network: %s\n", c.net)
	return sb.String()
}

// mix64 folds values into a running hash.
func mix64(h uint64, vs ...uint64) uint64 {
	for _, v := range vs {
		h ^= v
		h *= 0x100000001b3
		h ^= h >> 29
	}
	return h
}

// eventQueue is a binary min-heap of events by (at, seq). It holds
// pointers to recycled events: moving whole events (a message each) around
// the heap was the simulator's biggest cost.
type eventQueue struct {
	evs  []*event
	free []*event
	seq  uint64
}

func (q *eventQueue) less(i, j int) bool {
	a, b := q.evs[i], q.evs[j]
	return a.at < b.at || (a.at == b.at && a.seq < b.seq)
}

func (q *eventQueue) push(ev event) {
	var p *event
	if n := len(q.free); n > 0 {
		p, q.free = q.free[n-1], q.free[:n-1]
	} else {
		p = new(event)
	}
	*p = ev
	q.evs = append(q.evs, p)
	for i := len(q.evs) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q.less(i, parent) {
			break
		}
		q.evs[i], q.evs[parent] = q.evs[parent], q.evs[i]
		i = parent
	}
}

// pop removes the earliest event; release it once done with it.
func (q *eventQueue) pop() *event {
	top := q.evs[0]
	last := len(q.evs) - 1
	q.evs[0] = q.evs[last]
	q.evs[last] = nil
	q.evs = q.evs[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && q.less(l, m) {
			m = l
		}
		if r < last && q.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		q.evs[i], q.evs[m] = q.evs[m], q.evs[i]
		i = m
	}
	return top
}

func (q *eventQueue) release(ev *event) {
	*ev = event{}
	q.free = append(q.free, ev)
}
