package raft

import (
	"errors"
	"fmt"
	"math"

	"github.com/raftkv/raftkv/raft/confchange"
	"github.com/raftkv/raftkv/raft/quorum"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// Errors returned by the core. Match them with errors.Is.
var (
	// ErrProposalDropped: the proposal was not appended because no leader
	// is known or the leader is handing leadership over. The caller may
	// retry later.
	ErrProposalDropped = errors.New("raft: proposal dropped")
	// ErrStepLocalMsg: a message that only the local runtime may create
	// (MsgUnreachable, MsgSnapStatus) arrived looking like a peer's: with a
	// term set.
	ErrStepLocalMsg = errors.New("raft: cannot step a local message from a peer")
	// ErrInvalidMessage: the message is malformed (unknown type, no sender,
	// entries that do not follow each other...). It was ignored.
	ErrInvalidMessage = errors.New("raft: invalid message")
	// ErrNotVoter: the node cannot campaign because it is not a voter.
	ErrNotVoter = errors.New("raft: node is not a voter")
	// ErrLeaseHeld: with ReadOnlyLeaseBased, Campaign was refused because
	// this node heard from a leader (or started) less than an election
	// timeout ago: that leader may still serve reads under its lease.
	// TransferLeadership moves leadership safely.
	ErrLeaseHeld = errors.New("raft: campaign refused: a leader's read lease may still hold")
	// ErrConfChangePending: a membership change was proposed and the state
	// machine has not applied it yet (AppliedTo); a new leader counts every
	// entry of its log as possibly such a change until it is applied.
	// Retry once it is.
	ErrConfChangePending = errors.New("raft: a configuration change is pending")
	// ErrInvalidConfChange is wrapped with the reason a membership change
	// was refused: it adds an existing member, removes a non-member or the
	// last voter, names node 0, changes a joint configuration... It is
	// confchange.ErrInvalid.
	ErrInvalidConfChange = confchange.ErrInvalid
)

// transferCtx marks a MsgVote sent because the leader asked the candidate to
// take over: it must not be ignored by followers that still hear the leader.
var transferCtx = []byte("transfer")

type stepFunc func(c *Core, m raftpb.Message) error

// Core is one Raft node's protocol state machine. It is not safe for
// concurrent use: the runtime owns it and calls it from one goroutine.
type Core struct {
	id   uint64
	term uint64
	vote uint64
	role Role
	lead uint64
	log  *raftLog
	trk  tracker
	cfg  Config

	// leadTransferee is the peer leadership is being handed to, or None.
	leadTransferee uint64

	// conf is the configuration in effect: the last one applied
	// (ApplyConfChange, a snapshot, or New rebuilding it); trk mirrors it.
	conf raftpb.ConfState
	// confIndex is the index of the last conf change entry applied to
	// conf, or of the snapshot conf came from.
	confIndex uint64
	// replayed holds the outcomes of the conf change entries New applied
	// beyond what the state machine had: the runtime applies them again.
	replayed []appliedConf
	// wasMember: this node has been a voter or learner. removed: it was,
	// and the configuration in effect no longer lists it; it then never
	// campaigns or votes again.
	wasMember, removed bool
	// appliedIndex is the highest index the state machine has applied
	// (AppliedTo). Invariant: appliedIndex <= log.applying.
	appliedIndex uint64
	// pendingConfIndex (leader): entries up to it may hold a conf change
	// the state machine has not applied; no other is proposed until
	// appliedIndex reaches it.
	pendingConfIndex uint64

	// electionElapsed counts ticks since the last election timeout reset:
	// on a follower, since it last heard from a leader (or voted); on a
	// leader, since the last CheckQuorum check.
	electionElapsed  int
	heartbeatElapsed int
	// randomizedElectionTimeout is in [ElectionTicks, 2*ElectionTicks).
	randomizedElectionTimeout int
	// startLease (lease mode): this node started less than an election
	// timeout ago. It may have acknowledged a leader's heartbeat just
	// before it went down, so it honours that leader's lease as if it had
	// heard from it at start.
	startLease bool

	readOnly readOnly
	// pendingReads wait (on a new leader) for an entry of its term to
	// commit: before that, its commit index may be behind the true one.
	pendingReads []readRequest
	readStates   []ReadState

	// msgs may leave before the next Ready is persisted; msgsAfterPersist
	// must not (see Ready).
	msgs             []raftpb.Message
	msgsAfterPersist []raftpb.Message

	// Leader only: new entries or a new commit index are owed to the
	// followers. They go out together at the next Ready, so that the
	// proposals made between two Readys share one MsgApp.
	appendsOwed bool

	prevSoft SoftState
	prevHard raftpb.HardState

	tick func(c *Core)
	step stepFunc
}

// New returns a core restored from cfg.Storage, as a follower.
func New(cfg Config) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hs, cs, err := cfg.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: read initial state: %w", err)
	}
	log, err := newLog(cfg.Storage, cfg.MaxCommittedSizePerReady)
	if err != nil {
		return nil, fmt.Errorf("raft: open log: %w", err)
	}
	if hs.Commit > log.lastIndex() {
		return nil, fmt.Errorf("raft: stored commit index %d is past the last stored entry %d", hs.Commit, log.lastIndex())
	}
	log.committed = max(log.committed, hs.Commit)
	if cfg.Applied > log.committed {
		return nil, fmt.Errorf("raft: Applied %d is past the commit index %d", cfg.Applied, log.committed)
	}
	log.applied = max(log.applied, cfg.Applied)
	log.applying = log.applied
	if cfg.Knobs.ForgetVoteOnRestart {
		hs.Vote = raftpb.None
	}

	c := &Core{
		id:           cfg.ID,
		log:          log,
		trk:          newTracker(),
		cfg:          cfg,
		appliedIndex: log.applied,
	}
	snap, err := cfg.Storage.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("raft: read the snapshot the stored configuration belongs to: %w", err)
	}
	if err := c.restoreConfig(cs, snap.Metadata.Index, cfg.Voters); err != nil {
		return nil, err
	}
	if cfg.ReadOnlyOption == ReadOnlyLeaseBased {
		// Validate guarantees ElectionTicks >= minLeaseElectionTicks.
		c.readOnly.leaseTicks = uint64(cfg.ElectionTicks - 2)
		// Only a node that reached a term can have heard from a leader.
		c.startLease = hs.Term > 0
	}
	c.readOnly.reset()
	c.becomeFollower(hs.Term, raftpb.None)
	c.vote = hs.Vote
	c.prevHard = c.hardState()
	c.prevSoft = c.softState()
	return c, nil
}

func (c *Core) hardState() raftpb.HardState {
	return raftpb.HardState{Term: c.term, Vote: c.vote, Commit: c.log.committed}
}

func (c *Core) softState() SoftState { return SoftState{Lead: c.lead, Role: c.role} }

// promotable reports whether this node may become leader: it is a voter of
// the configuration in effect (of either half while joint). Learners, nodes
// waiting to join and removed nodes never campaign.
func (c *Core) promotable() bool { return c.trk.voters.Contains(c.id) }

// Tick advances the logical clock by one tick.
func (c *Core) Tick() { c.tick(c) }

// Campaign starts an election now (a pre-election first if PreVote is on).
// With ReadOnlyLeaseBased it returns ErrLeaseHeld while this node honours a
// leader's lease: its own vote could elect a new leader while the old one
// still answers reads from its lease.
func (c *Core) Campaign() error {
	if !c.promotable() {
		return ErrNotVoter
	}
	if c.cfg.ReadOnlyOption == ReadOnlyLeaseBased && c.role != Leader && c.inLease() {
		return ErrLeaseHeld
	}
	c.hup(false)
	return nil
}

// Propose appends data to the log (on the leader) or forwards it to the
// leader. It returns ErrProposalDropped when no leader is known or the
// leader is transferring leadership. Success does not mean the entry will
// commit: a forwarded proposal may be lost and a leader may be deposed.
func (c *Core) Propose(data []byte) error {
	return c.stepLocal(raftpb.Message{Type: raftpb.MsgProp, Entries: []raftpb.Entry{{Type: raftpb.EntryNormal, Data: data}}})
}

// ReadIndex requests a linearizable read. The answer is a ReadState with the
// same Context in a later Ready. A request may be dropped silently (no
// leader, or leadership lost): callers time out and retry.
func (c *Core) ReadIndex(rctx []byte) {
	_ = c.stepLocal(raftpb.Message{Type: raftpb.MsgReadIndex, Context: rctx})
}

// TransferLeadership asks the leader to hand leadership to the voter to.
// On a follower the request is forwarded to the leader. The leader ignores
// a transfer to itself, to a learner or to a node it does not know.
func (c *Core) TransferLeadership(to uint64) {
	if to == raftpb.None {
		return
	}
	_ = c.stepLocal(raftpb.Message{Type: raftpb.MsgTransferLeader, Index: to})
}

// stepLocal steps a request made through the Core's methods: it bypasses the
// checks that Step applies to messages from the network.
func (c *Core) stepLocal(m raftpb.Message) error {
	m.From = c.id
	return c.step(c, m)
}

// termless reports whether messages of type t are handled whatever their
// term: they ask "whoever leads now" rather than belong to a term.
func termless(t raftpb.MessageType) bool {
	switch t {
	case raftpb.MsgProp, raftpb.MsgReadIndex, raftpb.MsgTransferLeader, raftpb.MsgUnreachable, raftpb.MsgSnapStatus:
		return true
	}
	return false
}

// Step delivers a message from a peer, or a local MsgUnreachable or
// MsgSnapStatus report from the runtime (Term 0, From = the peer concerned).
// Malformed messages are ignored and reported with an error; a stale
// message, or a leader's message about a peer outside the configuration (an
// answer from a node just removed), is ignored silently. Step never panics
// on its input.
func (c *Core) Step(m raftpb.Message) error {
	if err := c.validate(m); err != nil {
		return err
	}
	if !termless(m.Type) {
		if handled := c.stepTerm(m); handled {
			return nil
		}
	}
	switch m.Type {
	case raftpb.MsgVote, raftpb.MsgPreVote:
		c.handleVoteRequest(m)
		return nil
	}
	return c.step(c, m)
}

// validate rejects what no correct peer or runtime sends.
func (c *Core) validate(m raftpb.Message) error {
	if !m.Type.Valid() {
		return fmt.Errorf("%w: unknown type %d", ErrInvalidMessage, uint8(m.Type))
	}
	if m.Type.IsLocal() && m.Term != 0 {
		return fmt.Errorf("%w: %v", ErrStepLocalMsg, m)
	}
	// From is the sender even on a forwarded request, so never this node.
	if m.From == raftpb.None || m.From == c.id {
		return fmt.Errorf("%w: bad sender in %v", ErrInvalidMessage, m)
	}
	if m.To != c.id && !(m.To == raftpb.None && m.Type.IsLocal()) {
		return fmt.Errorf("%w: %v is not addressed to %d", ErrInvalidMessage, m, c.id)
	}
	if !termless(m.Type) && m.Term == 0 {
		return fmt.Errorf("%w: %v has no term", ErrInvalidMessage, m)
	}
	// No log or term gets this far; rejecting it here keeps every later
	// +1 from wrapping around. A transfer's Index is a node id instead.
	if m.Term == math.MaxUint64 || (m.Index == math.MaxUint64 && m.Type != raftpb.MsgTransferLeader) || m.Commit == math.MaxUint64 ||
		(m.Snapshot != nil && m.Snapshot.Metadata.Index == math.MaxUint64) {
		return fmt.Errorf("%w: %v has an impossible term or index", ErrInvalidMessage, m)
	}
	switch m.Type {
	case raftpb.MsgApp:
		prevTerm := m.LogTerm
		for i := range m.Entries {
			e := &m.Entries[i]
			if e.Index != m.Index+1+uint64(i) || e.Index <= m.Index || e.Term < prevTerm || e.Term > m.Term || e.Type > raftpb.EntryConfChange {
				return fmt.Errorf("%w: %v carries a bad entry %d/%d at position %d", ErrInvalidMessage, m, e.Index, e.Term, i)
			}
			prevTerm = e.Term
		}
		if m.LogTerm > m.Term {
			return fmt.Errorf("%w: %v has a previous term above its term", ErrInvalidMessage, m)
		}
	case raftpb.MsgVote, raftpb.MsgPreVote:
		if m.LogTerm > m.Term {
			return fmt.Errorf("%w: %v has a last log term above its term", ErrInvalidMessage, m)
		}
	case raftpb.MsgSnap:
		s := m.Snapshot
		if s == nil || s.Metadata.Index == 0 || s.Metadata.Term == 0 || s.Metadata.Term > m.Term {
			return fmt.Errorf("%w: %v carries no usable snapshot", ErrInvalidMessage, m)
		}
		if err := confchange.Validate(s.Metadata.ConfState); err != nil {
			return fmt.Errorf("%w: %v carries an impossible configuration: %w", ErrInvalidMessage, m, err)
		}
	case raftpb.MsgTransferLeader:
		if m.Index == raftpb.None {
			return fmt.Errorf("%w: %v names no transferee", ErrInvalidMessage, m)
		}
	case raftpb.MsgProp:
		if len(m.Entries) == 0 {
			return fmt.Errorf("%w: empty proposal", ErrInvalidMessage)
		}
		for i := range m.Entries {
			if t := m.Entries[i].Type; t != raftpb.EntryNormal && t != raftpb.EntryConfChange {
				return fmt.Errorf("%w: proposal of a %v entry", ErrInvalidMessage, m.Entries[i].Type)
			}
		}
	}
	return nil
}

// stepTerm applies the term rules common to every role. It returns true
// when the message needs no further handling.
func (c *Core) stepTerm(m raftpb.Message) bool {
	switch {
	case m.Term > c.term:
		if m.Type == raftpb.MsgVote || m.Type == raftpb.MsgPreVote {
			force := string(m.Context) == string(transferCtx)
			if !force && c.inLease() {
				// A live leader exists: a node that merely lost touch
				// with it must not depose it (thesis §4.2.3).
				return true
			}
		}
		switch {
		case m.Type == raftpb.MsgPreVote:
			// A pre-vote never changes our term.
		case m.Type == raftpb.MsgPreVoteResp && !m.Reject:
			// Granted pre-votes carry the term we would campaign in;
			// the candidate moves there once it has a quorum.
		case m.Type == raftpb.MsgApp || m.Type == raftpb.MsgHeartbeat || m.Type == raftpb.MsgSnap:
			c.becomeFollower(m.Term, m.From)
		default:
			c.becomeFollower(m.Term, raftpb.None)
		}
		return false
	case m.Term < c.term:
		switch {
		case (c.cfg.CheckQuorum || c.cfg.PreVote) && (m.Type == raftpb.MsgHeartbeat || m.Type == raftpb.MsgApp):
			// A deposed leader that we no longer vote against (CheckQuorum
			// or PreVote keep our term from reaching it through a vote)
			// learns the new term from this answer and steps down.
			c.send(raftpb.Message{To: m.From, Type: raftpb.MsgAppResp})
		case m.Type == raftpb.MsgPreVote:
			// Tell the pre-candidate why: it may be the one behind.
			c.send(raftpb.Message{To: m.From, Type: raftpb.MsgPreVoteResp, Reject: true})
		}
		return true
	}
	return false
}

// inLease reports whether this node must not help depose a leader yet: with
// CheckQuorum, it heard from one (or, in lease mode, started) less than an
// election timeout ago. Read leases rely on this rule.
func (c *Core) inLease() bool {
	return c.cfg.CheckQuorum && (c.lead != raftpb.None || c.startLease) && c.electionElapsed < c.cfg.ElectionTicks
}

func (c *Core) handleVoteRequest(m raftpb.Message) {
	// We can vote for m.From if we already did in this term, or have
	// voted for nobody and follow no leader, or it is a pre-vote for a
	// later term (a pre-vote promises nothing).
	canVote := c.vote == m.From ||
		(c.vote == raftpb.None && c.lead == raftpb.None) ||
		(m.Type == raftpb.MsgPreVote && m.Term > c.term)
	upToDate := c.cfg.Knobs.SkipUpToDateCheck || c.log.isUpToDate(m.Index, m.LogTerm)
	// A removed node takes no part any more. Any other node answers, even
	// a learner: a candidate asks only nodes its configuration lists as
	// voters, so a learner is asked only when its promotion is applied on
	// the candidate and not yet on the learner.
	if c.removed && !c.cfg.Knobs.RemovedNodesKeepVoting {
		canVote = false
	}
	respType := raftpb.MsgVoteResp
	if m.Type == raftpb.MsgPreVote {
		respType = raftpb.MsgPreVoteResp
	}
	if canVote && upToDate {
		// The grant carries the request's term: for a pre-vote that is a
		// term we are not in, and the pre-candidate matches on it.
		c.send(raftpb.Message{To: m.From, Term: m.Term, Type: respType})
		if m.Type == raftpb.MsgVote {
			c.electionElapsed = 0
			c.vote = m.From
		}
		return
	}
	c.send(raftpb.Message{To: m.From, Term: c.term, Type: respType, Reject: true})
}

// sendsBeforePersist reports whether a message of type t may leave before
// the Ready that produced it is persisted: it promises nothing about this
// node's durable state.
func sendsBeforePersist(t raftpb.MessageType) bool {
	switch t {
	case raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap, raftpb.MsgTimeoutNow, raftpb.MsgProp:
		return true
	}
	return false
}

// send queues m. It stamps this node as the sender, forwarded requests
// included, and the current term unless m has its own or is termless.
func (c *Core) send(m raftpb.Message) {
	m.From = c.id
	switch {
	case termless(m.Type):
		m.Term = 0
	case m.Term == 0:
		m.Term = c.term
	}
	if sendsBeforePersist(m.Type) {
		c.msgs = append(c.msgs, m)
	} else {
		c.msgsAfterPersist = append(c.msgsAfterPersist, m)
	}
}

// ---- role changes ----

// reset starts a new term (or a new role in the same term).
func (c *Core) reset(term uint64) {
	if c.term != term {
		c.term = term
		c.vote = raftpb.None
	}
	c.lead = raftpb.None
	c.electionElapsed = 0
	c.heartbeatElapsed = 0
	c.resetElectionTimeout()
	c.leadTransferee = raftpb.None
	clear(c.trk.votes)
	clear(c.trk.progress)
	c.readOnly.reset()
	c.pendingReads = nil
	c.appendsOwed = false
}

// resetElectionTimeout draws a new timeout so that nodes that timed out
// together do not keep splitting the vote.
func (c *Core) resetElectionTimeout() {
	c.randomizedElectionTimeout = c.cfg.ElectionTicks + c.cfg.Rand.IntN(c.cfg.ElectionTicks)
}

func (c *Core) becomeFollower(term, lead uint64) {
	c.reset(term)
	c.role = Follower
	c.lead = lead
	c.step = stepFollower
	c.tick = tickElection
}

func (c *Core) becomePreCandidate() {
	// The term and vote stay: a pre-election changes nothing durable.
	c.step = stepCandidate
	c.tick = tickElection
	c.lead = raftpb.None
	clear(c.trk.votes)
	c.resetElectionTimeout()
	c.role = PreCandidate
}

func (c *Core) becomeCandidate() {
	c.reset(c.term + 1)
	c.step = stepCandidate
	c.tick = tickElection
	c.vote = c.id
	c.role = Candidate
}

func (c *Core) becomeLeader() {
	c.reset(c.term)
	c.step = stepLeader
	c.tick = tickHeartbeat
	c.lead = c.id
	c.role = Leader
	c.startLease = false
	c.trk.resetProgress(c.log.lastIndex()+1, c.cfg.MaxInflightMsgs, c.cfg.MaxInflightBytes)
	if self, ok := c.trk.progress[c.id]; ok {
		// The leader's own log counts toward commit only once durable.
		self.becomeReplicate()
		self.match = c.log.persistedIndex()
		self.next = c.log.lastIndex() + 1
		self.recentActive = true
	}
	// An entry of the new term: committing it commits everything before
	// (Figure 8), and tells ReadIndex the commit index is current.
	c.appendEntries([]raftpb.Entry{{Type: raftpb.EntryNormal}})
	// Any entry of the log may be a conf change the state machine has
	// not applied: the next change waits for all of them, this term's
	// entry included (which is what a single-server change would need,
	// per Ongaro's fix, and does no harm here).
	c.pendingConfIndex = c.log.lastIndex()
}

// hup starts an election: a pre-election first when PreVote is on, unless
// the leader asked us to take over.
func (c *Core) hup(transfer bool) {
	if c.role == Leader || c.term == math.MaxUint64 {
		return
	}
	if c.cfg.PreVote && !transfer {
		c.campaign(true, false)
		return
	}
	c.campaign(false, transfer)
}

func (c *Core) campaign(pre, transfer bool) {
	voteType, term := raftpb.MsgVote, c.term+1
	if pre {
		c.becomePreCandidate()
		voteType = raftpb.MsgPreVote
	} else {
		c.becomeCandidate()
		term = c.term
	}
	// Our own vote counts at once; the requests leave only after the
	// Ready carrying our new term and vote is persisted.
	if c.poll(c.id, true) == quorum.VoteWon {
		c.electionWon(pre)
		return
	}
	var ctx []byte
	if transfer {
		ctx = transferCtx
	}
	for _, id := range c.trk.electorate() {
		if id == c.id {
			continue
		}
		c.send(raftpb.Message{To: id, Term: term, Type: voteType, Index: c.log.lastIndex(), LogTerm: c.log.lastTerm(), Context: ctx})
	}
}

func (c *Core) poll(id uint64, granted bool) quorum.VoteResult {
	c.trk.recordVote(id, granted)
	return c.trk.tallyVotes()
}

func (c *Core) electionWon(pre bool) {
	if !c.promotable() {
		// The configuration changed under the campaign.
		c.becomeFollower(c.term, raftpb.None)
		return
	}
	if pre {
		c.campaign(false, false)
		return
	}
	c.becomeLeader()
}

// ---- ticks ----

func tickElection(c *Core) {
	c.electionElapsed++
	if c.electionElapsed >= c.cfg.ElectionTicks {
		c.startLease = false
	}
	if c.promotable() && c.electionElapsed >= c.randomizedElectionTimeout {
		c.electionElapsed = 0
		c.hup(false)
	}
}

func tickHeartbeat(c *Core) {
	c.readOnly.tick()
	c.heartbeatElapsed++
	c.electionElapsed++
	if c.electionElapsed >= c.cfg.ElectionTicks {
		c.electionElapsed = 0
		if c.cfg.CheckQuorum {
			if !c.trk.quorumActive() {
				c.becomeFollower(c.term, raftpb.None)
				return
			}
			for id, pr := range c.trk.progress {
				pr.recentActive = id == c.id
			}
		}
		c.expireSnapshots()
		// A transfer that has not finished within an election timeout
		// has failed; accept proposals again.
		c.leadTransferee = raftpb.None
		// Leaving a joint configuration may have been held up by that
		// transfer.
		c.maybeLeaveJoint()
	}
	if c.heartbeatElapsed >= c.cfg.HeartbeatTicks {
		c.heartbeatElapsed = 0
		// In lease mode each heartbeat opens a round of its own, so that
		// the acknowledgements renew the lease from this tick.
		if c.readOnly.leased() {
			c.readOnly.openRound()
		}
		c.bcastHeartbeat()
	}
}

// ---- follower and candidates ----

func stepFollower(c *Core, m raftpb.Message) error {
	switch m.Type {
	case raftpb.MsgProp, raftpb.MsgReadIndex, raftpb.MsgTransferLeader:
		if c.lead == raftpb.None {
			if m.Type == raftpb.MsgProp {
				return ErrProposalDropped
			}
			return nil
		}
		if m.Type == raftpb.MsgReadIndex && m.From != c.id {
			// A peer took us for the leader. Forwarded under our name
			// (From is always the sender), the answer would come back to
			// us, not to the peer: drop it, the peer retries.
			return nil
		}
		// Under our name: the leader does not answer proposals or
		// transfers, and the transferee travels in Index.
		m.To = c.lead
		c.send(m)
	case raftpb.MsgApp:
		c.heardFromLeader(m.From)
		return c.handleAppend(m)
	case raftpb.MsgHeartbeat:
		c.heardFromLeader(m.From)
		c.handleHeartbeat(m)
	case raftpb.MsgSnap:
		c.heardFromLeader(m.From)
		c.handleSnapshot(m)
	case raftpb.MsgTimeoutNow:
		if c.promotable() {
			c.hup(true)
		}
	case raftpb.MsgReadIndexResp:
		c.readStates = append(c.readStates, ReadState{Index: m.Index, Context: m.Context})
	}
	return nil
}

func (c *Core) heardFromLeader(lead uint64) {
	c.electionElapsed = 0
	c.lead = lead
}

func stepCandidate(c *Core, m raftpb.Message) error {
	respType := raftpb.MsgVoteResp
	if c.role == PreCandidate {
		respType = raftpb.MsgPreVoteResp
	}
	switch m.Type {
	case raftpb.MsgProp:
		return ErrProposalDropped
	case raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap:
		// Someone won this term: follow it.
		c.becomeFollower(m.Term, m.From)
		return c.step(c, m)
	case respType:
		switch c.poll(m.From, !m.Reject) {
		case quorum.VoteWon:
			c.electionWon(c.role == PreCandidate)
		case quorum.VoteLost:
			c.becomeFollower(c.term, raftpb.None)
		}
	}
	return nil
}

func (c *Core) handleAppend(m raftpb.Message) error {
	if m.Index < c.log.committed {
		// Everything up to our commit index matches any leader's log.
		c.send(raftpb.Message{To: m.From, Type: raftpb.MsgAppResp, Index: c.log.committed})
		return nil
	}
	last, ok, err := c.log.maybeAppend(m.Index, m.LogTerm, m.Commit, m.Entries, c.cfg.Knobs.SkipConflictTruncation)
	if err != nil {
		return err
	}
	if ok {
		c.send(raftpb.Message{To: m.From, Type: raftpb.MsgAppResp, Index: last})
		return nil
	}
	// The logs differ at m.Index. Hint the highest index that may still
	// match: no entry of ours with a term above m.LogTerm can, so the
	// leader can skip them all in one round trip.
	hint, hintTerm := c.log.findConflictByTerm(min(m.Index, c.log.lastIndex()), m.LogTerm)
	c.send(raftpb.Message{To: m.From, Type: raftpb.MsgAppResp, Index: m.Index, Reject: true, RejectHint: hint, HintTerm: hintTerm})
	return nil
}

func (c *Core) handleHeartbeat(m raftpb.Message) {
	// The leader sends min(our match, its commit), so every entry up to
	// m.Commit that we hold is the leader's. commitTo ignores a commit past
	// our log: garbage, not a reason to guess.
	c.log.commitTo(m.Commit)
	c.send(raftpb.Message{To: m.From, Type: raftpb.MsgHeartbeatResp, Context: m.Context})
}

func (c *Core) handleSnapshot(m raftpb.Message) {
	s := *m.Snapshot
	idx, term := s.Metadata.Index, s.Metadata.Term
	switch {
	case idx <= c.log.committed:
		// Old news: tell the leader where we are.
		c.send(raftpb.Message{To: m.From, Type: raftpb.MsgAppResp, Index: c.log.committed})
	case c.log.matchTerm(idx, term):
		// We hold the snapshot's last entry: keep our log, just commit.
		// Acknowledge no further: entries after it may not be the
		// leader's.
		c.log.commitTo(idx)
		c.send(raftpb.Message{To: m.From, Type: raftpb.MsgAppResp, Index: c.log.committed})
	default:
		c.log.restore(s)
		// An empty ConfState means the membership did not change (the
		// cluster was bootstrapped from Config.Voters). validate checked
		// any other.
		if cs := s.Metadata.ConfState; !isEmptyConf(cs) {
			c.switchConfig(cloneConfState(cs))
		}
		c.confIndex = max(c.confIndex, idx)
		c.replayed = nil
		c.send(raftpb.Message{To: m.From, Type: raftpb.MsgAppResp, Index: c.log.lastIndex()})
	}
}

// ---- leader ----

func (c *Core) appendEntries(ents []raftpb.Entry) {
	last := c.log.lastIndex()
	for i := range ents {
		ents[i].Term = c.term
		ents[i].Index = last + 1 + uint64(i)
	}
	c.log.append(ents)
	c.appendsOwed = true
}

func stepLeader(c *Core, m raftpb.Message) error {
	switch m.Type {
	case raftpb.MsgProp:
		if c.leadTransferee != raftpb.None {
			return ErrProposalDropped
		}
		if _, ok := c.trk.progress[c.id]; !ok {
			return ErrProposalDropped // removed from the cluster
		}
		// Copy: the entries are the caller's, and we stamp them.
		ents := make([]raftpb.Entry, 0, len(m.Entries))
		for _, e := range m.Entries {
			if e.Type == raftpb.EntryConfChange {
				if err := c.admitConfChange(e.Data, c.log.lastIndex()+1+uint64(len(ents))); err != nil {
					if m.From == c.id {
						return err
					}
					// The follower that forwarded it cannot be told.
					continue
				}
			}
			ents = append(ents, e)
		}
		if len(ents) > 0 {
			c.appendEntries(ents)
		}
		return nil
	case raftpb.MsgReadIndex:
		c.handleReadIndex(readRequest{from: m.From, ctx: m.Context})
		return nil
	case raftpb.MsgTransferLeader:
		c.handleTransfer(m.Index)
		return nil
	}

	pr, ok := c.trk.progress[m.From]
	if !ok {
		// A peer outside the configuration: answers from a node just
		// removed, or the transport's reports about it, are routine.
		return nil
	}
	switch m.Type {
	case raftpb.MsgAppResp:
		pr.recentActive = true
		if m.Reject {
			c.handleAppReject(m, pr)
			return nil
		}
		if m.Index > c.log.lastIndex() {
			return fmt.Errorf("%w: %v acknowledges past the last index %d", ErrInvalidMessage, m, c.log.lastIndex())
		}
		c.handleAppAck(m, pr)
	case raftpb.MsgHeartbeatResp:
		pr.recentActive = true
		pr.probeSent = false
		if pr.state == StateReplicate && pr.inflights.full() {
			// The follower is alive but the window is stuck full: appends
			// or their acknowledgements may have been lost. Let one more
			// append out; if the follower missed some, it rejects it and
			// the leader probes from its match.
			pr.inflights.freeFirst()
		}
		if pr.match < c.log.lastIndex() {
			// Even with nothing new to send: an empty append at next-1
			// makes a follower that lost appends say so.
			c.sendAppend(m.From, pr, true)
		}
		if m.Context != nil {
			c.readOnly.ack(m.From, m.Context)
			c.serveReads(c.readOnly.release(c.trk.voters, c.id))
		}
	case raftpb.MsgSnapStatus:
		if pr.state != StateSnapshot {
			return nil
		}
		if m.Reject {
			pr.pendingSnapshot = 0
		}
		pr.becomeProbe()
		// Wait for a heartbeat answer before probing: the follower may
		// still be installing the snapshot.
		pr.probeSent = true
	case raftpb.MsgUnreachable:
		if pr.state == StateReplicate {
			pr.becomeProbe()
		}
	}
	return nil
}

func (c *Core) handleAppReject(m raftpb.Message, pr *progress) {
	next := m.RejectHint
	if m.HintTerm > 0 {
		// Skip every entry of ours whose term the follower cannot have
		// at that index.
		next, _ = c.log.findConflictByTerm(m.RejectHint, m.HintTerm)
	}
	if pr.maybeDecrTo(m.Index, next) {
		if pr.state == StateReplicate {
			pr.becomeProbe()
		}
		c.sendAppend(m.From, pr, false)
	}
}

func (c *Core) handleAppAck(m raftpb.Message, pr *progress) {
	// A probe answered at the match we already knew still proves the
	// logs match there: start streaming.
	if !pr.maybeUpdate(m.Index) && !(pr.state == StateProbe && m.Index == pr.match) {
		return
	}
	switch pr.state {
	case StateProbe:
		pr.becomeReplicate()
	case StateSnapshot:
		if pr.match+1 >= c.log.firstIndex() {
			pr.becomeProbe()
			pr.becomeReplicate()
		}
	case StateReplicate:
		pr.inflights.freeLE(m.Index)
	}
	if c.maybeCommit() {
		c.appendsOwed = true
	}
	// Keep streaming into the window this acknowledgement freed, or after
	// the probe that found the match.
	c.sendAppends(m.From, pr)
	if m.From == c.leadTransferee && pr.match == c.log.lastIndex() {
		c.sendTimeoutNow(m.From)
	}
}

// maybeCommit advances the commit index to what a quorum has durably
// stored, counting only entries of the current term (Figure 8: an older
// term's entry is committed only indirectly, by a later one).
func (c *Core) maybeCommit() bool {
	mci := c.trk.committed()
	if mci <= c.log.committed || mci > c.log.lastIndex() {
		return false
	}
	if !c.cfg.Knobs.CommitOldTermByCounting && c.log.termOrZero(mci) != c.term {
		return false
	}
	firstOfTerm := !c.committedInTerm()
	c.log.commitTo(mci)
	if firstOfTerm && c.committedInTerm() {
		// Reads queued since election can now be served.
		pending := c.pendingReads
		c.pendingReads = nil
		for _, r := range pending {
			c.handleReadIndex(r)
		}
	}
	return true
}

func (c *Core) committedInTerm() bool { return c.log.termOrZero(c.log.committed) == c.term }

// sendAppend sends the entries pr lacks (or a snapshot when they are
// compacted) and reports whether it sent anything. An empty append is sent
// only if sendIfEmpty, to carry the commit index or probe.
func (c *Core) sendAppend(to uint64, pr *progress, sendIfEmpty bool) bool {
	if to == c.id || pr.isPaused() {
		return false
	}
	prevIndex := pr.next - 1
	prevTerm, errTerm := c.log.term(prevIndex)
	maxSize := c.cfg.MaxSizePerMsg
	if c.cfg.MaxInflightBytes > 0 && pr.state == StateReplicate {
		// Not full, so the subtraction cannot wrap.
		maxSize = min(maxSize, c.cfg.MaxInflightBytes-pr.inflights.bytes)
	}
	ents, errEnts := c.log.entriesFrom(pr.next, maxSize)
	if len(ents) == 0 && !sendIfEmpty && errTerm == nil && errEnts == nil {
		return false
	}
	if errTerm != nil || errEnts != nil {
		if !isCompacted(errTerm) && !isCompacted(errEnts) {
			// Storage trouble other than compaction: try again later.
			return false
		}
		return c.sendSnapshot(to, pr)
	}
	var bytes uint64
	for i := range ents {
		bytes += ents[i].Size()
	}
	last := prevIndex + uint64(len(ents))
	c.send(raftpb.Message{To: to, Type: raftpb.MsgApp, Index: prevIndex, LogTerm: prevTerm, Entries: ents, Commit: c.log.committed})
	pr.sentEntries(len(ents), bytes, last)
	// The follower commits no further than the last entry it was sent.
	pr.sentCommit = max(pr.sentCommit, min(c.log.committed, last))
	return true
}

func (c *Core) sendSnapshot(to uint64, pr *progress) bool {
	if !pr.recentActive {
		// A snapshot is costly; send it only to a peer that answers.
		return false
	}
	s, err := c.log.snapshot()
	if err != nil || s.IsEmpty() {
		// ErrSnapshotTemporarilyUnavailable or worse: retry on a later
		// heartbeat answer.
		return false
	}
	pr.becomeSnapshot(s.Metadata.Index)
	c.send(raftpb.Message{To: to, Type: raftpb.MsgSnap, Snapshot: &s})
	return true
}

// sendAppends sends pr what it lacks, in as many appends as MaxSizePerMsg
// and the inflight window allow, and at least an empty one if the peer may
// not know the commit index yet.
func (c *Core) sendAppends(to uint64, pr *progress) {
	for sendIfEmpty := pr.sentCommit < c.log.committed; c.sendAppend(to, pr, sendIfEmpty); sendIfEmpty = false {
	}
}

// flush sends the appends owed since the last Ready, one message per
// follower for all proposals made in between.
func (c *Core) flush() {
	if c.role != Leader || !c.appendsOwed {
		return
	}
	for _, id := range c.trk.ids {
		if id == c.id {
			continue
		}
		c.sendAppends(id, c.trk.progress[id])
	}
	c.appendsOwed = false
}

// expireSnapshots gives up on snapshots pending for over one full election
// timeout: the runtime should have reported MsgSnapStatus by then, and if the
// report was lost the follower would otherwise never hear from us again.
func (c *Core) expireSnapshots() {
	for _, id := range c.trk.ids {
		pr := c.trk.progress[id]
		if pr.state != StateSnapshot {
			continue
		}
		if pr.snapshotStale {
			pr.pendingSnapshot = 0
			pr.becomeProbe()
			continue
		}
		pr.snapshotStale = true
	}
}

func (c *Core) bcastHeartbeat() {
	ctx := c.readOnly.heartbeatCtx()
	for _, id := range c.trk.ids {
		if id == c.id {
			continue
		}
		pr := c.trk.progress[id]
		c.send(raftpb.Message{To: id, Type: raftpb.MsgHeartbeat, Commit: min(pr.match, c.log.committed), Context: ctx})
	}
}

// handleReadIndex records a read at the current commit index and confirms
// leadership before answering: at once if no other leader can exist (we
// alone are a quorum, or we hold a lease), else with a heartbeat round.
func (c *Core) handleReadIndex(r readRequest) {
	if !c.committedInTerm() {
		c.pendingReads = append(c.pendingReads, r)
		return
	}
	r.index = c.log.committed
	if c.trk.voters.CommittedIndex(quorum.MapAckIndexer{c.id: 1}) == 1 || c.readOnly.leaseValid(c.trk.voters, c.id) {
		c.serveReads([]readRequest{r})
		return
	}
	if c.readOnly.add(r.from, r.ctx, r.index) {
		c.bcastHeartbeat()
	}
}

func (c *Core) serveReads(rs []readRequest) {
	for _, r := range rs {
		if r.from == c.id || r.from == raftpb.None {
			c.readStates = append(c.readStates, ReadState{Index: r.index, Context: r.ctx})
			continue
		}
		c.send(raftpb.Message{To: r.from, Type: raftpb.MsgReadIndexResp, Index: r.index, Context: r.ctx})
	}
}

func (c *Core) handleTransfer(to uint64) {
	pr, ok := c.trk.progress[to]
	// Only a voter that stays may take over: not a learner, nor a voter
	// of the configuration being left.
	if !ok || !c.trk.voters.Incoming.Contains(to) || to == c.id || to == c.leadTransferee {
		return
	}
	// A newer request replaces an older one.
	c.leadTransferee = to
	c.electionElapsed = 0
	if pr.match == c.log.lastIndex() {
		c.sendTimeoutNow(to)
		return
	}
	// Even an empty append helps: if earlier ones were lost, the
	// transferee's rejection restarts replication to it now.
	c.sendAppend(to, pr, true)
}

// sendTimeoutNow tells to to campaign at once. Its election skips the wait
// that followers' leases impose, so this leader's read lease ends here, for
// the rest of the term: the message may arrive however late.
func (c *Core) sendTimeoutNow(to uint64) {
	c.readOnly.revoke()
	c.send(raftpb.Message{To: to, Type: raftpb.MsgTimeoutNow})
}

// ---- Ready ----

// HasReady reports whether Ready would return any work.
func (c *Core) HasReady() bool {
	if c.softState() != c.prevSoft || c.hardState() != c.prevHard {
		return true
	}
	if c.log.nextUnstableSnapshot() != nil || c.log.hasNextUnstableEnts() || c.log.hasNextCommittedEnts() {
		return true
	}
	return len(c.msgs) > 0 || len(c.msgsAfterPersist) > 0 || len(c.readStates) > 0 || (c.role == Leader && c.appendsOwed)
}

// Ready returns the work accumulated since the previous Ready. The runtime
// must carry it out as the Ready type documents and then call Advance
// before calling Ready again.
func (c *Core) Ready() Ready {
	c.flush()
	rd := Ready{
		Entries:              c.log.nextUnstableEnts(),
		Messages:             c.msgs,
		MessagesAfterPersist: c.msgsAfterPersist,
		ReadStates:           c.readStates,
	}
	if s := c.log.nextUnstableSnapshot(); s != nil {
		rd.Snapshot = *s
	}
	// Committed entries up to lastIndex are durable by the time they are
	// applied: earlier Readys were persisted, this one is persisted first.
	if ents, err := c.log.nextCommittedEnts(); err == nil {
		rd.CommittedEntries = ents
	}
	if ss := c.softState(); ss != c.prevSoft {
		rd.SoftState = &ss
		c.prevSoft = ss
	}
	if hs := c.hardState(); hs != c.prevHard {
		rd.HardState = hs
		rd.MustSync = hs.Term != c.prevHard.Term || hs.Vote != c.prevHard.Vote
		c.prevHard = hs
	}
	rd.MustSync = rd.MustSync || len(rd.Entries) > 0 || !rd.Snapshot.IsEmpty()

	// Everything is now handed out.
	c.msgs, c.msgsAfterPersist, c.readStates = nil, nil, nil
	c.log.unstable.inProgress = c.log.unstable.offset + uint64(len(c.log.unstable.entries))
	if c.log.unstable.snapshot != nil {
		c.log.unstable.snapshotInProgress = true
	}
	if n := len(rd.CommittedEntries); n > 0 {
		c.log.applying = rd.CommittedEntries[n-1].Index
	}
	c.readOnly.sent()
	return rd
}

// Advance tells the core that the runtime has done everything rd asked:
// entries and snapshot are durable, committed entries applied.
func (c *Core) Advance(rd Ready) {
	if !rd.Snapshot.IsEmpty() {
		c.log.unstable.stableSnapTo(rd.Snapshot.Metadata.Index)
		c.log.applied = max(c.log.applied, rd.Snapshot.Metadata.Index)
	}
	if n := len(rd.Entries); n > 0 {
		e := rd.Entries[n-1]
		c.log.unstable.stableTo(e.Index, e.Term)
		if c.role == Leader && c.log.matchTerm(e.Index, e.Term) {
			// Our own copy now counts toward the quorum.
			if self, ok := c.trk.progress[c.id]; ok && self.maybeUpdate(e.Index) && c.maybeCommit() {
				c.appendsOwed = true
			}
		}
	}
	if n := len(rd.CommittedEntries); n > 0 {
		c.log.applied = max(c.log.applied, rd.CommittedEntries[n-1].Index)
	}
}
