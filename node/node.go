package node

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/raft/readydrive"
	"github.com/raftkv/raftkv/transport"
)

// Node is one running member of a raft cluster. See the package comment
// for the goroutines it owns.
type Node struct {
	cfg Config
	id  Identity // who this node is, as its data directory says
	log *slog.Logger

	core  *raft.Core         // owned by the loop goroutine
	drive *readydrive.Driver // carries out core's Readies; owned by the loop goroutine
	store logStore
	trans *transport.Transport
	// clock, with LeaseReads, turns the monotonic clock into the core's
	// ticks; nil otherwise. Owned by the loop goroutine.
	clock *tickClock

	// inbox carries everything the loop feeds the core. It is buffered so
	// that bursts of peer messages and proposals queue while the loop
	// writes to disk, and are then stepped in one batch (one fsync for
	// many proposals).
	inbox chan event
	// applyc carries persisted committed work to the apply goroutine. Its
	// buffer lets the loop persist a few batches ahead of the state
	// machine; its bound stops the loop when the state machine lags far.
	applyc  chan applyBatch
	pending *pending

	// snapc hands a snapshot from the apply goroutine to the writer
	// goroutine. snapBusy is set by the apply goroutine when it hands one
	// over and cleared by the writer when it is done, so at most one is
	// written at a time and snapc (buffered 1) never blocks.
	snapc    chan snapJob
	snapBusy atomic.Bool

	// notes carry what the apply goroutine applied to the loop, in apply
	// order: conf changes, snapshots installed, the applied index (the
	// core must learn them on its own goroutine). The apply goroutine
	// appends and signals notesWake (buffered 1); it never waits for the
	// loop, which may itself be waiting for room in applyc.
	notesMu   sync.Mutex // guards notes
	notes     []applyNote
	notesWake chan struct{}

	// The loop's view of the membership, owned by the loop goroutine: the
	// directory as of the last change the core applied, the states of the
	// members as Status shows them, the peers the transport dials, and
	// those it stops dialing at a later tick (dropPeers, by id: the tick).
	dir     directory
	members []MemberState
	// appliedDir is the directory of the last change or snapshot applied
	// (not the members first known): what a change is compared with.
	appliedDir directory
	peers      map[uint64]string
	dropPeers  map[uint64]uint64
	// ticks counts the core's ticks; removedAt is the tick at which a
	// node removed from the cluster stops (0: not removed). Owned by the
	// loop goroutine.
	ticks, removedAt uint64
	// confIndex is the index of the last conf change (or snapshot) the
	// loop passed on to the core. Owned by the loop goroutine.
	confIndex uint64
	// confDirty: the loop changed members since it last published Status.
	confDirty bool

	status        atomic.Pointer[Status] // published by the loop after every step
	confChanged   signal                 // broadcast when the configuration or directory changed
	statusChanged signal                 // broadcast when role, leader or term change
	applied       atomic.Uint64          // last index the state machine applied
	appliedMoved  signal                 // broadcast when applied moves

	stats *stats
	// lead and leadTerm are the last leader the loop knew of and its term,
	// for stats.leaderChanges. Owned by the loop goroutine.
	lead, leadTerm uint64

	stopOnce  sync.Once
	stopc     chan struct{} // closed: stop taking work; the loop exits
	abortOnce sync.Once
	abortc    chan struct{} // closed: the apply goroutine drops queued work
	loopDone  chan struct{}
	applyDone chan struct{}
	snapDone  chan struct{}
	closeOnce sync.Once
	closeErr  error // set once by closeOnce

	failMu  sync.Mutex // guards failErr
	failErr error      // why the node stopped on its own, if it did
}

type eventKind uint8

const (
	evMessage eventKind = iota
	evPropose
	evRead
	evTransfer
	evConfChange
)

// event is one input for the core.
type event struct {
	kind eventKind
	msg  raftpb.Message // evMessage
	data []byte         // evPropose: the enveloped proposal; evRead: the request context
	to   uint64         // evTransfer
	// evConfChange: the change asked for.
	change *memberChange

	// evPropose, evConfChange: the core's verdict (buffered 1), and the caller's
	// cancellation, so the loop skips proposals nobody waits for.
	errc      chan<- error
	cancelled <-chan struct{}
}

// Queue sizes; see the fields they size.
const (
	inboxSize  = 1024
	applyDepth = 16
)

// logStore is the durable log the node writes and the core reads;
// storage.Storage implements it. It must be safe for concurrent use: the
// loop saves entries while the apply goroutine saves snapshots and the core
// reads.
type logStore interface {
	raft.Storage
	// Save appends ents (replacing any entries from ents[0].Index on) and
	// records hs, durably, before it returns.
	Save(hs raftpb.HardState, ents []raftpb.Entry) error
	snapStore
	// SaveSnapshot durably records snap, whose file is staged, keeping
	// the log if it holds the snapshot's last entry and replacing it
	// otherwise. A snapshot older than the stored one fails with an error
	// wrapping errSnapshotOld.
	SaveSnapshot(snap raftpb.Snapshot) error
	// Compact drops entries a saved snapshot covers, up to index, except
	// the ones the store keeps for lagging followers.
	Compact(index uint64) error
	Close() error
}

// start starts node id on store, which reports its fsyncs to st.
func start(cfg Config, id Identity, store logStore, st *stats) (*Node, error) {
	fresh, err := bootstrapLog(id, store)
	if err != nil {
		return nil, err
	}
	if cfg.PeerAddr == "" {
		cfg.PeerAddr = id.Addr
	}
	var seed [24]byte
	crand.Read(seed[:])
	n := &Node{
		cfg:       cfg,
		id:        id,
		log:       cfg.Logger.With("node", id.Name),
		store:     store,
		stats:     st,
		inbox:     make(chan event, inboxSize),
		applyc:    make(chan applyBatch, applyDepth),
		pending:   newPending(binary.LittleEndian.Uint64(seed[16:])),
		notesWake: make(chan struct{}, 1),
		peers:     make(map[uint64]string),
		dropPeers: make(map[uint64]uint64),
		stopc:     make(chan struct{}),
		abortc:    make(chan struct{}),
		loopDone:  make(chan struct{}),
		applyDone: make(chan struct{}),
		snapc:     make(chan snapJob, 1),
		snapDone:  make(chan struct{}),
	}
	ap, err := n.restore()
	if err != nil {
		return nil, err
	}
	hs, _, err := store.InitialState()
	if err != nil {
		return nil, fmt.Errorf("read initial state: %w", err)
	}
	ap.replayedTo = hs.Commit
	rc := coreConfig(cfg, id.ID)
	rc.Storage = store
	rc.Applied = ap.applied
	rc.Rand = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:16])))
	if n.core, err = raft.New(rc); err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	if id.RemovedAt != 0 || n.core.Status().Removed {
		return nil, fmt.Errorf("%w: %s was removed from cluster %016x (at index %d); its data directory is no longer needed",
			ErrRemoved, id.Name, id.ClusterID, id.RemovedAt)
	}
	n.drive = readydrive.New(n.core, readyRuntime{n})
	if cfg.LeaseReads {
		n.clock = &tickClock{interval: cfg.TickInterval, max: cfg.ElectionTicks}
	}
	// Until the log says more: the members of the latest snapshot, or
	// those this node first knew.
	n.dir, n.appliedDir = ap.dir, ap.dir
	if len(ap.dir.members) == 0 {
		for _, m := range id.Members {
			n.dir.members = append(n.dir.members, memberInfo{Member: m})
		}
	}
	n.trans, err = transport.New(transport.Config{
		ID:               id.ID,
		ClusterID:        id.ClusterID,
		ListenAddr:       cfg.PeerAddr,
		Snapshots:        snapshotFiles{store},
		MaxSnapshotBytes: cfg.MaxSnapshotBytes,
		Query:            n.answerQuery,
		Logger:           cfg.Logger, // it adds its own node attribute
	}, handler{n})
	if err != nil {
		return nil, fmt.Errorf("start transport: %w", err)
	}
	book, err := n.addressBook(ap)
	if err != nil {
		return nil, err
	}
	n.syncPeers(book, nil)
	if err := n.trans.Start(); err != nil {
		n.trans.Close()
		return nil, fmt.Errorf("listen for peers on %s: %w", cfg.PeerAddr, err)
	}
	n.log.Info("node started",
		"id", id.Name, "cluster", fmt.Sprintf("%016x", id.ClusterID), "data_dir", cfg.DataDir,
		"peer_addr", cfg.PeerAddr, "new", fresh, "term", hs.Term, "vote", n.name(hs.Vote),
		"commit", hs.Commit, "applied", ap.applied)
	n.members = n.memberStates()
	n.publishStatus()
	go n.run()
	go n.runApply(ap)
	go n.runSnapshots()
	return n, nil
}

// coreConfig is the raft configuration cfg asks for, short of the storage,
// the applied index and the random source.
func coreConfig(cfg Config, id uint64) raft.Config {
	rc := raft.DefaultConfig()
	rc.ID = id
	// No Voters: the configuration is in the log (the founders' first
	// entry) and in snapshots.
	rc.ElectionTicks = cfg.ElectionTicks
	rc.HeartbeatTicks = cfg.HeartbeatTicks
	// Always on: a leader cut off from its quorum steps down, and
	// followers that hear from a live leader do not depose it.
	rc.CheckQuorum = true
	if cfg.LeaseReads {
		rc.ReadOnlyOption = raft.ReadOnlyLeaseBased
	}
	return rc
}

// restore loads the latest snapshot into the state machine and returns the
// apply goroutine's starting point.
func (n *Node) restore() (*applier, error) {
	ap := &applier{}
	snap, err := n.store.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	if !snap.IsEmpty() {
		if err := n.restoreSnapshot(ap, snap.Metadata); err != nil {
			return nil, fmt.Errorf("restore from snapshot at %d: %w", snap.Metadata.Index, err)
		}
	}
	n.applied.Store(ap.applied)
	return ap, nil
}

// handler receives the transport's inbound traffic. It is a separate type so
// that Node does not export the transport's callbacks.
type handler struct{ n *Node }

var _ transport.Handler = handler{}

// Deliver queues a peer's message for the loop. It blocks while the inbox is
// full, which pushes back on the peer's stream instead of dropping messages.
func (h handler) Deliver(m raftpb.Message) {
	if m.Type.IsLocal() || m.To != h.n.id.ID {
		return // the transport checks too; the core must never see these from a peer
	}
	h.n.stats.messagesReceived.Add(1)
	h.step(m)
}

func (h handler) ReportUnreachable(id uint64) {
	h.step(raftpb.Message{Type: raftpb.MsgUnreachable, From: id, To: h.n.id.ID})
}

func (h handler) ReportSnapshot(id uint64, ok bool) {
	h.step(raftpb.Message{Type: raftpb.MsgSnapStatus, From: id, To: h.n.id.ID, Reject: !ok})
}

// step queues m for the loop, waiting while the inbox is full.
func (h handler) step(m raftpb.Message) {
	send(h.n.inbox, event{kind: evMessage, msg: m}, nil, h.n.stopc)
}

// run is the loop goroutine, the only one that touches the core.
func (n *Node) run() {
	defer close(n.loopDone)
	if n.clock != nil {
		// Before the ticker starts, so that it never fires before a tick
		// is due by the clock.
		n.clock.last = time.Now()
	}
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		// Advancing one Ready can make the next one (a leader's own write
		// commits entries): then do not wait for input, but still take
		// what is there, so that a busy core does not starve it.
		var readyNow <-chan struct{}
		if n.core.HasReady() {
			readyNow = alwaysReady
		}
		select {
		case <-ticker.C:
			n.tick()
			n.membershipTick()
		case <-n.notesWake:
			n.drainNotes()
		case ev := <-n.inbox:
			n.catchUpTicks()
			n.step(ev)
			n.stepQueued()
		case <-readyNow:
		case <-n.stopc:
			return
		}
		if n.core.HasReady() {
			if err := n.handleReady(); err != nil {
				n.fail(err)
				return
			}
		}
		n.publishStatus()
	}
}

// tick ticks the core when the ticker fires. With LeaseReads the clock
// decides how many ticks are due instead: the ticker drops the ticks the
// loop was too busy to receive.
func (n *Node) tick() {
	if n.clock == nil {
		n.coreTick()
		return
	}
	n.catchUpTicks()
}

// coreTick ticks the core, and counts.
func (n *Node) coreTick() {
	n.core.Tick()
	n.ticks++
}

// catchUpTicks (LeaseReads) gives the core every tick due by the clock. It
// runs before any input that may make the core check its lease: a leader
// whose loop stalled (a slow disk, a GC pause) must not judge its lease by a
// tick count that missed the stall.
func (n *Node) catchUpTicks() {
	if n.clock == nil {
		return
	}
	for range n.clock.due(time.Now()) {
		n.coreTick()
	}
}

// alwaysReady is a closed channel: receiving from it never blocks.
var alwaysReady = func() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// stepQueued steps whatever else queued meanwhile, so that it is persisted
// with the same write; the bound keeps a flood from starving the disk and
// the ticker.
func (n *Node) stepQueued() {
	for range inboxSize {
		select {
		case ev := <-n.inbox:
			n.step(ev)
		default:
			return
		}
	}
}

func (n *Node) step(ev event) {
	switch ev.kind {
	case evMessage:
		if err := n.core.Step(ev.msg); err != nil {
			n.log.Debug("step message", "msg", ev.msg.String(), "err", err)
		}
	case evPropose:
		select {
		case <-ev.cancelled:
			ev.errc <- errCancelled
			return
		default:
		}
		err := n.core.Propose(ev.data)
		if errors.Is(err, raft.ErrProposalDropped) {
			n.stats.proposalsDropped.Add(1)
		}
		ev.errc <- err
	case evRead:
		n.core.ReadIndex(ev.data)
	case evTransfer:
		n.core.TransferLeadership(ev.to)
	case evConfChange:
		select {
		case <-ev.cancelled:
			ev.errc <- errCancelled
			return
		default:
		}
		ev.errc <- n.proposeChange(ev.change)
	}
}

var errCancelled = errors.New("cancelled before it reached raft")

// handleReady carries out one Ready through the driver, which keeps the
// order the Ready contract demands (readydrive's package comment says why);
// readyRuntime is what the node does at each step.
func (n *Node) handleReady() error {
	if _, ok := n.drive.Start(false); !ok {
		return nil
	}
	n.stats.readies.Add(1)
	err := n.drive.RunUntil(readydrive.Advance)
	if err == nil {
		// Advance may commit a new leader's first entry and so serve reads
		// that waited for it: after the disk write, time has passed.
		n.catchUpTicks()
		err = n.drive.Step()
	}
	if errors.Is(err, errStopping) {
		return nil // Advance no longer matters
	}
	return err
}

// readyRuntime is the node's side of the Ready driver. Its methods run on
// the loop goroutine.
type readyRuntime struct{ n *Node }

var _ readydrive.Runtime = readyRuntime{}

// errStopping: the node stopped while a Ready was being handed to the apply
// goroutine.
var errStopping = errors.New("stopping")

// Send hands messages to the transport, which queues them per peer. A
// leader's appends and heartbeats go out this way while the disk write
// runs (thesis §10.2.1).
func (r readyRuntime) Send(msgs []raftpb.Message) {
	r.n.stats.messagesSent.Add(uint64(len(msgs)))
	r.n.trans.Send(msgs)
}

// Persist writes a snapshot from the leader, then the hard state and
// entries.
func (r readyRuntime) Persist(rd *raft.Ready) error {
	n := r.n
	if !rd.Snapshot.IsEmpty() {
		if err := n.store.SaveSnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("persist snapshot at %d from the leader: %w", rd.Snapshot.Metadata.Index, err)
		}
	}
	// A Ready that only moves the commit index is not written: the commit
	// index need not be durable (a restarted node learns it again), and
	// the next Save that must happen carries the whole hard state anyway.
	// This saves followers an fsync per commit.
	if rd.MustSync {
		if err := n.store.Save(rd.HardState, rd.Entries); err != nil {
			return fmt.Errorf("persist hard state and %d entries: %w", len(rd.Entries), err)
		}
	}
	return nil
}

// Apply answers the waiting reads (each waits on its own for its index to
// be applied) and hands the snapshot and committed entries to the apply
// goroutine.
func (r readyRuntime) Apply(rd *raft.Ready) error {
	n := r.n
	for _, rs := range rd.ReadStates {
		n.pending.resolveRead(rs.Context, rs.Index)
	}
	if !rd.Snapshot.IsEmpty() || len(rd.CommittedEntries) > 0 {
		if !send(n.applyc, applyBatch{snap: rd.Snapshot, ents: rd.CommittedEntries}, nil, n.stopc) {
			return errStopping
		}
	}
	return nil
}

// publishStatus makes the core's state visible to Status and wakes the
// goroutines waiting for a leader change.
func (n *Node) publishStatus() {
	cs := n.core.Status()
	st := &Status{
		ID:        n.id.ID,
		Self:      n.id.Name,
		ClusterID: n.id.ClusterID,
		Term:      cs.Term,
		Vote:      cs.Vote,
		Lead:      cs.Lead,
		Role:      cs.Role,
		Commit:    cs.Commit,
		Progress:  cs.Progress,
		Config:    cs.Config,
		ConfIndex: n.confIndex,
		Members:   n.members,
		Removed:   cs.Removed,
	}
	prev := n.status.Swap(st)
	if prev == nil || prev.Lead != st.Lead || prev.Role != st.Role || prev.Term != st.Term {
		n.statusChanged.Broadcast()
	}
	if n.confDirty || prev == nil || prev.Removed != st.Removed || !prev.Config.Equal(st.Config) {
		n.confDirty = false
		n.confChanged.Broadcast()
	}
	if prev != nil && st.Term > prev.Term && st.Vote == n.id.ID {
		// Only a candidate votes for itself, and only as it enters a
		// term. (At start, prev is nil: a vote read from disk is old.)
		n.stats.campaigns.Add(1)
	}
	if st.Lead != raftpb.None && (st.Lead != n.lead || st.Term != n.leadTerm) {
		n.lead, n.leadTerm = st.Lead, st.Term
		n.stats.leaderChanges.Add(1)
	}
	if prev != nil && (prev.Lead != st.Lead || prev.Role != st.Role) {
		n.log.Info("role changed", "role", st.Role.String(), "term", st.Term, "leader", n.name(st.Lead))
	}
}

// fail stops the node after an error it cannot recover from, such as a
// failed disk write: continuing could break a promise already made.
func (n *Node) fail(err error) {
	n.failMu.Lock()
	if n.failErr == nil {
		n.failErr = err
	}
	n.failMu.Unlock()
	n.log.Error("node failed, stopping", "err", err)
	n.stopOnce.Do(func() { close(n.stopc) })
}

// stopWith stops the node on its own for a reason that is no failure (it
// was removed from the cluster): Err then returns err.
func (n *Node) stopWith(err error) {
	n.failMu.Lock()
	if n.failErr == nil {
		n.failErr = err
	}
	n.failMu.Unlock()
	n.stopOnce.Do(func() { close(n.stopc) })
}

// Done returns a channel closed when the node stops taking work: after Stop
// or Close, or when it stopped on its own (Err says why: a failure, or
// ErrRemoved).
func (n *Node) Done() <-chan struct{} { return n.stopc }

// Err returns the error that made the node stop on its own, or nil.
// ErrRemoved means it was removed from the cluster.
func (n *Node) Err() error {
	n.failMu.Lock()
	defer n.failMu.Unlock()
	return n.failErr
}

// Propose replicates data and returns the StateMachine's result of applying
// it on this node. On error, the value tells whether the command may still
// be applied: errors wrapping ErrOutcomeUnknown mean it may; any other error
// (ErrNoLeader, ErrProposalTooLarge, ErrStopped alone, ctx expiry before the
// proposal left the caller) means it was not and will not be.
//
// ctx should carry a deadline: a proposal lost in a leader change is never
// applied and only the deadline ends the wait.
func (n *Node) Propose(ctx context.Context, data []byte) (any, error) {
	// Checked first because select picks at random among ready cases, and
	// a queued proposal's outcome is unknown.
	if err := n.stoppedOr(ctx); err != nil {
		return nil, fmt.Errorf("propose: %w", err)
	}
	if len(data) > n.cfg.MaxProposalBytes {
		return nil, fmt.Errorf("propose %d bytes: %w (limit %d)", len(data), ErrProposalTooLarge, n.cfg.MaxProposalBytes)
	}
	id, env, fut := n.pending.addProposal(data)
	errc := make(chan error, 1)
	if !send(n.inbox, event{kind: evPropose, data: env, errc: errc, cancelled: ctx.Done()}, ctx.Done(), n.stopc) {
		n.pending.proposals.remove(id)
		return nil, fmt.Errorf("propose: %w", n.stoppedOr(ctx))
	}
	for {
		select {
		case err := <-errc:
			if err == nil {
				errc = nil // in the log now: wait for the future alone
				continue
			}
			n.pending.proposals.remove(id)
			switch {
			case errors.Is(err, raft.ErrProposalDropped):
				return nil, fmt.Errorf("propose: %w: %w", ErrNoLeader, err)
			case err == errCancelled:
				// The loop saw ctx done, so ctx.Err is set: callers
				// match it, as when ctx ends before the proposal is queued.
				return nil, fmt.Errorf("propose: %w: %w", err, ctx.Err())
			}
			return nil, fmt.Errorf("propose: %w", err)
		case res := <-fut:
			return res, nil
		case <-ctx.Done():
			n.pending.proposals.remove(id)
			return nil, fmt.Errorf("propose: %w: %w", ErrOutcomeUnknown, ctx.Err())
		case <-n.stopc:
			n.pending.proposals.remove(id)
			return nil, fmt.Errorf("propose: %w: %w", ErrOutcomeUnknown, ErrStopped)
		}
	}
}

// ReadIndex returns once this node's state machine has applied everything
// committed when the call began, so that a read of it is linearizable. It
// fails fast with ErrNoLeader when no leader is known, and retries the
// request each election timeout in case a leader change dropped it.
func (n *Node) ReadIndex(ctx context.Context) error {
	if n.Status().Lead == raftpb.None {
		return fmt.Errorf("read index: %w", ErrNoLeader)
	}
	id, rctx, indexc := n.pending.addRead()
	defer n.pending.reads.remove(id)
	ask := func() error {
		if !send(n.inbox, event{kind: evRead, data: rctx}, ctx.Done(), n.stopc) {
			return fmt.Errorf("read index: %w", n.stoppedOr(ctx))
		}
		return nil
	}
	if err := ask(); err != nil {
		return err
	}
	retry := time.NewTicker(time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval)
	defer retry.Stop()
	var index uint64
	for received := false; !received; {
		select {
		case index = <-indexc:
			received = true
		case <-retry.C:
			if err := ask(); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("read index: %w", ctx.Err())
		case <-n.stopc:
			return fmt.Errorf("read index: %w", ErrStopped)
		}
	}
	if err := n.waitApplied(ctx, index); err != nil {
		return fmt.Errorf("read index %d: %w", index, err)
	}
	return nil
}

// waitApplied returns once the state machine has applied index.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	for {
		moved := n.appliedMoved.C()
		if n.applied.Load() >= index {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopc:
			return ErrStopped
		}
	}
}

// TransferLeadership asks the leader to hand leadership to member to, and
// returns once this node sees to lead. Any member may be asked, for any
// voter. It fails at once with ErrNotMember when to is not a voter (a
// learner cannot lead) and with ErrNoLeader when no leader is known. A leader gives up on a
// transferee that does not take over within an election timeout, and a
// request may be lost in a leader change, so the request is repeated each
// election timeout until to leads or ctx ends.
func (n *Node) TransferLeadership(ctx context.Context, to uint64) error {
	if m, ok := n.Status().Member(to); !ok || m.Role != RoleVoter {
		return fmt.Errorf("transfer leadership to %016x: %w: not a voter", to, ErrNotMember)
	}
	fail := func(err error) error { return fmt.Errorf("transfer leadership to %s: %w", n.name(to), err) }
	if n.Status().Lead == raftpb.None {
		return fail(ErrNoLeader)
	}
	ask := func() error {
		if !send(n.inbox, event{kind: evTransfer, to: to}, ctx.Done(), n.stopc) {
			return fail(n.stoppedOr(ctx))
		}
		return nil
	}
	if err := ask(); err != nil {
		return err
	}
	retry := time.NewTicker(time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval)
	defer retry.Stop()
	for {
		changed := n.statusChanged.C()
		if n.Status().Lead == to {
			return nil
		}
		select {
		case <-changed:
		case <-retry.C:
			if err := ask(); err != nil {
				return err
			}
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-n.stopc:
			return fail(ErrStopped)
		}
	}
}

// send delivers v on ch unless done (nil: never) or stop closes first, and
// reports whether it did.
func send[T any](ch chan<- T, v T, done, stop <-chan struct{}) bool {
	select {
	case ch <- v:
		return true
	case <-done:
		return false
	case <-stop:
		return false
	}
}

// stoppedOr returns ErrStopped if the node is stopped, else ctx's error.
func (n *Node) stoppedOr(ctx context.Context) error {
	select {
	case <-n.stopc:
		return ErrStopped
	default:
		return ctx.Err()
	}
}

// Status returns the node's latest state. It never blocks on the loop.
func (n *Node) Status() Status {
	st := *n.status.Load()
	st.Applied = n.applied.Load()
	return st
}

// Stop stops the node gracefully. A leader first hands leadership to its
// most up-to-date voter, so that the cluster does not wait out an election
// timeout to notice it is gone (a rolling restart then elects no leader by
// timeout); it gives up on a hand-over that takes longer than an election
// timeout, as the core does. Then the node takes no new work, lets the
// state machine apply what was already persisted and committed, stops every
// goroutine and closes storage and transport. If ctx expires first it stops
// at once, as Close does. It is safe to call Stop and Close any number of
// times, concurrently.
func (n *Node) Stop(ctx context.Context) error {
	n.handOver(ctx)
	n.stopOnce.Do(func() { close(n.stopc) })
	select {
	case <-n.applyDone:
	case <-ctx.Done():
	}
	return n.Close()
}

// handOver hands a leader's leadership to its most up-to-date voter that
// was recently active, if it has one.
func (n *Node) handOver(ctx context.Context) {
	st := n.Status()
	if st.Role != raft.Leader || st.Removed {
		return
	}
	var to, match uint64
	for _, m := range st.Members {
		p, ok := st.Progress[m.ID]
		if m.ID == st.ID || m.Role != RoleVoter || !ok || !p.RecentActive {
			continue
		}
		if to == 0 || p.Match > match {
			to, match = m.ID, p.Match
		}
	}
	if to == 0 {
		n.log.Info("no active peer to hand leadership to")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.ElectionTicks)*n.cfg.TickInterval)
	defer cancel()
	start := time.Now()
	if err := n.TransferLeadership(ctx, to); err != nil {
		n.log.Info("leadership transfer did not complete; stopping anyway", "to", st.Name(to), "err", err)
		return
	}
	n.log.Info("handed leadership over", "to", st.Name(to), "took", time.Since(start).Round(time.Millisecond))
}

// Close stops the node now: queued work is dropped. It returns once every
// goroutine the node started has ended, with the first error from closing
// transport and storage, or the error that made the node fail (not
// ErrRemoved: a removal is no failure).
func (n *Node) Close() error {
	n.stopOnce.Do(func() { close(n.stopc) })
	n.abortOnce.Do(func() { close(n.abortc) })
	n.closeOnce.Do(func() {
		<-n.loopDone
		<-n.applyDone
		<-n.snapDone
		failure := n.Err()
		if errors.Is(failure, ErrRemoved) {
			failure = nil // no failure: Err says why it stopped
		}
		n.closeErr = errors.Join(failure, n.trans.Close(), n.store.Close())
	})
	return n.closeErr
}

func (n *Node) name(id uint64) string {
	if id == n.id.ID {
		return n.id.Name
	}
	return nameOf(n.members, id)
}
