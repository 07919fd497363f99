package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// Membership in the runtime.
//
// A change is proposed on the leader only, one at a time: the loop checks
// it against the directory and the configuration the core has applied
// (which the core's pending rule keeps current: it takes no new change
// before the state machine applied the previous one), and proposes it
// with the members' names and addresses and the proposal's id in the
// context. The apply goroutine applies the committed entry to its own copy
// of the configuration and the directory (for snapshots), answers the
// proposer, and notes the change for the loop, which hands it to the core
// (ApplyConfChange), then the applied index (AppliedTo), in apply order,
// and makes the transport follow: new members are dialed at once, removed
// ones an election timeout later, so that the leader's last word (the
// commit index that tells them they are out) reaches them.
//
// A node that applies a configuration without itself logs it, waits an
// election timeout (a leader hands leadership over in that time) and stops;
// Err then returns ErrRemoved.
//
// A learner that joined (AddJoiner) is promoted by the leader's runtime,
// one change at a time, once it has caught up: the leader replicates to it
// optimistically (it has whatever snapshot it needed) and its log lacks no
// more than PromoteLag of the leader's entries. Promoting earlier would
// make a voter that cannot yet help commit, and could stall a small
// cluster.

// A member a change adds gets a random id, drawn by the leader's runtime
// and carried in the change: ids are never reused (see directory), so a
// node that replaces a removed one may take its name.
//
// PromoteLag is how many entries a joining learner may lag behind the
// leader's log and still be promoted to voter: about what it receives in
// one round trip under load, so that it catches up at once.
const PromoteLag = 256

type changeOp uint8

const (
	opAdd changeOp = iota + 1
	opRemove
	opPromote
)

// memberChange is a membership change asked of the loop.
type memberChange struct {
	op         changeOp
	name, addr string // opAdd
	id         uint64 // opRemove, opPromote
	learner    bool   // opAdd: as a learner
	join       bool   // opAdd: a joiner, promoted once caught up; asking again is no error
	proposal   uint64 // the waiting caller's id
}

// confResult is what applying a conf change hands to its proposer.
type confResult struct {
	index uint64 // the change's
	err   error
}

// errAlreadyDone: an AddJoiner asked again, for a learner already added
// with the same address.
var errAlreadyDone = errors.New("already done")

// AddMember adds a member called name, whose peers reach it at peerAddr, as
// a voter or (learner) as a learner, and returns it (with the id the
// leader gave it) once the change is applied on this node, the
// configuration settled. Only the leader takes
// it: any other node fails with a *NotLeaderError. It fails with
// ErrMemberExists if a member has that name or address, and with
// ErrChangePending while another change is under way. An error wrapping
// ErrOutcomeUnknown means the change was proposed and may still apply.
//
// A new voter counts toward the quorum at once: add a node that is up, or
// add it as a learner and promote it once it caught up.
func (n *Node) AddMember(ctx context.Context, name, peerAddr string, learner bool) (MemberState, error) {
	what := fmt.Sprintf("add member %s at %s", name, peerAddr)
	return n.add(ctx, what, memberChange{op: opAdd, name: name, addr: peerAddr, learner: learner})
}

// AddJoiner adds a node that asks to join: as a learner, which the leader
// promotes to voter once it has caught up. Asking again for a learner added
// with the same address succeeds (a joiner that restarted before it
// recorded the answer asks again). Otherwise it behaves as AddMember.
func (n *Node) AddJoiner(ctx context.Context, name, peerAddr string) (MemberState, error) {
	what := fmt.Sprintf("add joining node %s at %s", name, peerAddr)
	return n.add(ctx, what, memberChange{op: opAdd, name: name, addr: peerAddr, learner: true, join: true})
}

func (n *Node) add(ctx context.Context, what string, ch memberChange) (MemberState, error) {
	if err := CheckName(ch.name); err != nil {
		return MemberState{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := CheckAddr(ch.addr); err != nil {
		return MemberState{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := n.change(ctx, what, ch); err != nil {
		return MemberState{}, err
	}
	m, _ := n.Status().MemberByName(ch.name)
	return m, nil
}

// RemoveMember removes member id, voter or learner, and returns once the
// change is applied on this node and the configuration settled. Removing
// the leader itself is allowed: it hands leadership over and stops. It
// fails with ErrNotMember, ErrLastVoter, ErrChangePending or a
// *NotLeaderError, as AddMember does.
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	return n.change(ctx, fmt.Sprintf("remove member %s", n.Status().Name(id)), memberChange{op: opRemove, id: id})
}

// PromoteMember makes learner id a voter, and returns once the change is
// applied on this node and the configuration settled. It fails with
// ErrNotMember, ErrAlreadyVoter, ErrChangePending or a *NotLeaderError.
func (n *Node) PromoteMember(ctx context.Context, id uint64) error {
	return n.change(ctx, fmt.Sprintf("promote member %s", n.Status().Name(id)), memberChange{op: opPromote, id: id})
}

// Members returns the members as of the last configuration change this
// node applied, with their roles.
func (n *Node) Members() []MemberState { return n.Status().Members }

// change asks the loop to propose ch, and waits until it is applied and
// the configuration settled.
func (n *Node) change(ctx context.Context, what string, ch memberChange) error {
	fail := func(err error) error { return fmt.Errorf("%s: %w", what, err) }
	if err := n.stoppedOr(ctx); err != nil {
		return fail(err)
	}
	id, fut := n.pending.addChange()
	ch.proposal = id
	for retried := false; ; retried = true {
		err := n.proposeLoop(ctx, &ch)
		if err == nil {
			break
		}
		if st := n.Status(); errors.Is(err, ErrChangePending) && !retried && !st.Config.Joint() && st.Role == raft.Leader {
			// A new leader takes no change before it has applied its
			// whole log, which takes a moment: wait for that, once.
			wctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.ElectionTicks)*n.cfg.TickInterval)
			werr := n.waitApplied(wctx, st.Progress[st.ID].Match)
			cancel()
			if werr == nil {
				continue
			}
		}
		n.pending.proposals.remove(id)
		if errors.Is(err, errAlreadyDone) {
			return nil
		}
		return fail(err)
	}
	var index uint64
	select {
	case res := <-fut:
		r := res.(confResult)
		if r.err != nil {
			return fail(r.err)
		}
		index = r.index
	case <-ctx.Done():
		n.pending.proposals.remove(id)
		return fail(fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err()))
	case <-n.stopc:
		n.pending.proposals.remove(id)
		return fail(fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrStopped))
	}
	// Applied: wait until the loop has it too, so that Status shows it,
	// and, for a change of voters, until the joint configuration it
	// entered is left (the leader proposes that on its own), so that the
	// caller's next change can go through.
	for {
		changed := n.confChanged.C()
		if st := n.Status(); st.Removed || (st.ConfIndex >= index && !st.Config.Joint()) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fail(fmt.Errorf("applied at index %d, but the joint configuration it entered is not left yet "+
				"(a majority of the old and of the new voters must be up): %w", index, ctx.Err()))
		case <-n.stopc:
			return fail(fmt.Errorf("applied at index %d, then: %w", index, ErrStopped))
		}
	}
}

// proposeLoop hands ch to the loop and returns its verdict: nil once the
// change is proposed.
func (n *Node) proposeLoop(ctx context.Context, ch *memberChange) error {
	errc := make(chan error, 1)
	if !send(n.inbox, event{kind: evConfChange, change: ch, errc: errc, cancelled: ctx.Done()}, ctx.Done(), n.stopc) {
		return n.stoppedOr(ctx)
	}
	select {
	case err := <-errc:
		if err == errCancelled {
			return fmt.Errorf("%w: %w", err, ctx.Err())
		}
		return err
	case <-n.stopc:
		// The loop may have proposed it before it stopped.
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrStopped)
	}
}

// proposeChange checks ch against the membership the core has applied and
// proposes it. It runs on the loop goroutine.
func (n *Node) proposeChange(ch *memberChange) error {
	n.drainNotes()
	st := n.core.Status()
	if st.Role != raft.Leader {
		e := &NotLeaderError{}
		if st.Lead != raftpb.None {
			e.Leader = Member{Name: n.name(st.Lead), ID: st.Lead}
			if m, ok := n.dir.get(st.Lead); ok {
				e.Leader = m.Member
			}
		}
		return e
	}
	cs := st.Config
	if cs.Joint() {
		return fmt.Errorf("%w: the cluster is still leaving the joint configuration of the last change", ErrChangePending)
	}
	cctx := changeContext{proposal: ch.proposal}
	var change raftpb.ConfChangeSingle
	switch ch.op {
	case opAdd:
		if m, ok := n.dir.find(func(m memberInfo) bool { return m.Name == ch.name }); ok {
			if ch.join && m.Addr == ch.addr && slices.Contains(cs.Learners, m.ID) {
				return errAlreadyDone
			}
			return fmt.Errorf("%w: %s is a member already", ErrMemberExists, ch.name)
		}
		if m, ok := n.dir.find(func(m memberInfo) bool { return m.Addr == ch.addr }); ok {
			return fmt.Errorf("%w: member %s has peer address %s", ErrMemberExists, m.Name, ch.addr)
		}
		id := n.newMemberID(cs)
		change = raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddVoter, NodeID: id}
		if ch.learner {
			change.Type = raftpb.ConfChangeAddLearner
		}
		cctx.members = []memberInfo{{Member: Member{Name: ch.name, ID: id, Addr: ch.addr}, promote: ch.join}}
	case opRemove:
		switch {
		case !isMember(cs, ch.id):
			return fmt.Errorf("%w: %s", ErrNotMember, n.name(ch.id))
		case slices.Equal(cs.Voters, []uint64{ch.id}):
			return fmt.Errorf("%w: %s is the only voter", ErrLastVoter, n.name(ch.id))
		}
		change = raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemove, NodeID: ch.id}
	case opPromote:
		switch {
		case !isMember(cs, ch.id):
			return fmt.Errorf("%w: %s", ErrNotMember, n.name(ch.id))
		case slices.Contains(cs.Voters, ch.id):
			return fmt.Errorf("%w: %s", ErrAlreadyVoter, n.name(ch.id))
		}
		change = raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddVoter, NodeID: ch.id}
	}
	cc := raftpb.ConfChange{Changes: []raftpb.ConfChangeSingle{change}, Context: cctx.marshal()}
	err := n.core.ProposeConfChange(cc)
	switch {
	case errors.Is(err, raft.ErrConfChangePending):
		return fmt.Errorf("%w (%v)", ErrChangePending, err)
	case errors.Is(err, raft.ErrProposalDropped):
		return fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	return err
}

// newMemberID draws the id of a member to add: random, and never one a
// member has or had (see directory).
func (n *Node) newMemberID(cs raftpb.ConfState) uint64 {
	for {
		id := randomNonZero()
		if _, taken := n.dir.get(id); !taken && !isMember(cs, id) && !n.dir.wasRemoved(id) && id != n.id.ID {
			return id
		}
	}
}

// applyNote is something the apply goroutine applied that the loop must
// pass on to the core.
type applyNote struct {
	kind  noteKind
	index uint64
	cc    raftpb.ConfChange // noteConf
	dir   directory         // noteConf, noteSnapshot: the directory after it
}

type noteKind uint8

const (
	noteConf     noteKind = iota + 1 // the conf change at index was applied
	noteSnapshot                     // the snapshot at index was installed
	noteApplied                      // every entry up to index was applied
)

// pushNote queues nt for the loop. It never blocks.
func (n *Node) pushNote(nt applyNote) {
	n.notesMu.Lock()
	n.notes = append(n.notes, nt)
	n.notesMu.Unlock()
	select {
	case n.notesWake <- struct{}{}:
	default:
	}
}

// drainNotes passes what the apply goroutine applied on to the core, in
// order, and has the transport follow the directory. It runs on the loop
// goroutine.
func (n *Node) drainNotes() {
	n.notesMu.Lock()
	notes := n.notes
	n.notes = nil
	n.notesMu.Unlock()
	changed := false
	var gone []uint64 // members that left: the transport stops dialing them
	for _, nt := range notes {
		switch nt.kind {
		case noteConf:
			if _, err := n.core.ApplyConfChange(nt.index, nt.cc); err != nil {
				n.log.Debug("the core refused a conf change", "index", nt.index, "err", err)
			}
		case noteApplied:
			n.core.AppliedTo(nt.index)
			continue
		}
		// A change or a snapshot: members of the previous directory
		// that the new one lacks left.
		for _, m := range n.appliedDir.members {
			if _, ok := nt.dir.get(m.ID); !ok {
				gone = append(gone, m.ID)
			}
		}
		n.dir, n.appliedDir, n.confIndex, changed = nt.dir, nt.dir, nt.index, true
	}
	if !changed {
		return
	}
	n.members = n.memberStates()
	n.confDirty = true
	n.syncPeers(n.dir, gone)
	if n.removedAt == 0 && n.core.Status().Removed {
		n.removed()
	}
}

// removed records that this node was removed, so that it refuses to start
// again (its log may not hold the commit index that says so), and has it
// stop in an election timeout: a leader hands leadership over first, and
// the others need nothing more from it. It runs on the loop goroutine,
// once.
func (n *Node) removed() {
	n.removedAt = n.ticks + uint64(n.cfg.ElectionTicks)
	n.log.Warn("this node was removed from the cluster; it stops in an election timeout",
		"cluster", fmt.Sprintf("%016x", n.id.ClusterID), "at_index", n.confIndex)
	id := n.id
	id.RemovedAt = n.confIndex
	if err := saveIdentity(n.cfg.DataDir, id); err != nil {
		n.log.Error("record the removal", "err", err)
	}
}

// syncPeers makes the transport dial every member of d, and stop dialing,
// an election timeout later, those in gone (removed by a change, or absent
// from an installed snapshot) unless d has them again by then. Peers are
// dropped only so, never because the directory lacks them: a node that
// catches up applies old configurations, which lack later members it is
// talking to.
func (n *Node) syncPeers(d directory, gone []uint64) {
	for _, m := range d.members {
		if m.ID == n.id.ID || m.Addr == "" {
			continue
		}
		delete(n.dropPeers, m.ID)
		if n.peers[m.ID] != m.Addr {
			n.trans.AddPeer(m.ID, m.Addr)
			n.peers[m.ID] = m.Addr
		}
	}
	for _, id := range gone {
		_, peer := n.peers[id]
		_, scheduled := n.dropPeers[id]
		if _, back := d.get(id); peer && !scheduled && !back {
			n.dropPeers[id] = n.ticks + uint64(n.cfg.ElectionTicks)
		}
	}
}

// addressBook returns every member a starting node may have to talk to
// before it has applied its log: those it first knew, those of its latest
// snapshot, and those its log adds after it. The ones that left are
// dropped as the log is applied.
func (n *Node) addressBook(a *applier) (directory, error) {
	book := make(map[uint64]memberInfo)
	for _, m := range n.id.Members {
		book[m.ID] = memberInfo{Member: m}
	}
	for _, m := range a.dir.members {
		book[m.ID] = m
	}
	first, err := n.store.FirstIndex()
	if err != nil {
		return directory{}, fmt.Errorf("read the first index: %w", err)
	}
	last, err := n.store.LastIndex()
	if err != nil {
		return directory{}, fmt.Errorf("read the last index: %w", err)
	}
	for lo := first; lo <= last; {
		ents, err := n.store.Entries(lo, last+1, 4<<20)
		if err != nil {
			return directory{}, fmt.Errorf("read entries from %d for their members: %w", lo, err)
		}
		for _, e := range ents {
			if e.Type != raftpb.EntryConfChange {
				continue
			}
			cc, err := raftpb.UnmarshalConfChange(e.Data)
			if err != nil {
				continue
			}
			cctx, _ := unmarshalChangeContext(cc.Context)
			for _, m := range cctx.members {
				book[m.ID] = m
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	out := directory{members: make([]memberInfo, 0, len(book))}
	for _, m := range book {
		out.members = append(out.members, m)
	}
	slices.SortFunc(out.members, func(a, b memberInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// membershipTick does, once per tick, what membership needs of the loop:
// stop a removed node, drop peers that left, promote a joiner that caught
// up.
func (n *Node) membershipTick() {
	if n.removedAt != 0 && n.ticks >= n.removedAt {
		n.log.Warn("stopping: this node was removed from the cluster")
		n.stopWith(fmt.Errorf("%w %016x", ErrRemoved, n.id.ClusterID))
		return
	}
	lead := n.status.Load().Lead
	for id, at := range n.dropPeers {
		switch {
		case n.ticks < at:
		case id == lead:
			// A node catching up applies old changes that removed
			// members; the one sending it the log stays.
			n.dropPeers[id] = n.ticks + uint64(n.cfg.ElectionTicks)
		default:
			n.trans.RemovePeer(id)
			delete(n.peers, id)
			delete(n.dropPeers, id)
		}
	}
	n.maybePromote()
}

// maybePromote proposes, on the leader, to promote a joining learner that
// has caught up (see PromoteLag).
func (n *Node) maybePromote() {
	st := n.status.Load()
	if st.Role != raft.Leader || st.Config.Joint() {
		return
	}
	last := st.Progress[st.ID].Match
	for _, m := range st.Members {
		if !m.Promote {
			continue
		}
		pr, ok := st.Progress[m.ID]
		if !ok || pr.State != raft.StateReplicate || !pr.RecentActive || pr.Match+PromoteLag < last {
			continue
		}
		cc := raftpb.ConfChange{
			Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddVoter, NodeID: m.ID}},
			Context: changeContext{}.marshal(),
		}
		if err := n.core.ProposeConfChange(cc); err == nil {
			n.log.Info("promoting a joined learner that caught up", "member", m.Name, "match", pr.Match, "last_index", last)
		}
		return // one change at a time
	}
}

// applyConfChange applies the conf change entry e to the apply goroutine's
// configuration and directory, answers its proposer, and notes it for the
// loop. It runs on the apply goroutine.
func (n *Node) applyConfChange(a *applier, e *raftpb.Entry) {
	cc, err := raftpb.UnmarshalConfChange(e.Data)
	if err != nil {
		// Not a change, on any node: the core skips it too.
		n.log.Warn("skipping a conf change entry that does not decode", "index", e.Index, "err", err)
		return
	}
	cctx, err := unmarshalChangeContext(cc.Context)
	if err != nil {
		n.log.Warn("a conf change's context does not decode: the members it adds are named by id", "index", e.Index, "err", err)
	}
	res := confResult{index: e.Index}
	next, err := confchange.Apply(a.conf, cc)
	if err != nil {
		// Every node refuses it alike, the core included.
		res.err = fmt.Errorf("apply the change at index %d: %w", e.Index, err)
		n.log.Warn("a committed conf change is invalid; ignored", "index", e.Index, "err", err)
	} else {
		what := describeChange(a.dir, cctx.members, a.conf, cc)
		a.conf, a.dir = next, a.dir.apply(cc, cctx.members, next)
		level := slog.LevelInfo
		if e.Index <= a.replayedTo {
			level = slog.LevelDebug // applied again after a restart
		}
		n.log.Log(context.Background(), level, "membership changed", "index", e.Index, "change", what, "config", next.String())
	}
	n.pushNote(applyNote{kind: noteConf, index: e.Index, cc: cc, dir: a.dir})
	if cctx.proposal != 0 {
		n.pending.proposals.resolve(cctx.proposal, res)
	}
}

// describeChange says what cc does to cs, naming members from d and added.
func describeChange(d directory, added []memberInfo, cs raftpb.ConfState, cc raftpb.ConfChange) string {
	if cc.IsLeaveJoint() {
		return "leave the joint configuration"
	}
	name := func(id uint64) string {
		if m, ok := d.get(id); ok {
			return m.Name
		}
		if i := slices.IndexFunc(added, func(m memberInfo) bool { return m.ID == id }); i >= 0 {
			return added[i].Name + " (" + added[i].Addr + ")"
		}
		return fmt.Sprintf("%016x", id)
	}
	var parts []string
	for _, ch := range cc.Changes {
		switch {
		case ch.Type == raftpb.ConfChangeAddVoter && slices.Contains(cs.Learners, ch.NodeID):
			parts = append(parts, "promote "+name(ch.NodeID)+" to voter")
		case ch.Type == raftpb.ConfChangeAddVoter:
			parts = append(parts, "add voter "+name(ch.NodeID))
		case ch.Type == raftpb.ConfChangeAddLearner && slices.Contains(cs.Voters, ch.NodeID):
			parts = append(parts, "demote "+name(ch.NodeID)+" to learner")
		case ch.Type == raftpb.ConfChangeAddLearner:
			parts = append(parts, "add learner "+name(ch.NodeID))
		case ch.Type == raftpb.ConfChangeRemove:
			parts = append(parts, "remove "+name(ch.NodeID))
		}
	}
	return strings.Join(parts, ", ")
}

// answerQuery answers other nodes' queries (query.go) while the node runs.
// It runs on a transport goroutine and reads only what never changes.
func (n *Node) answerQuery(from uint64, req []byte) ([]byte, error) {
	switch req[0] {
	case queryHello:
		f := n.id.Founding
		if f == nil || f.Nonces == nil {
			return nil, fmt.Errorf("%s did not found cluster %016x by exchanging nonces: it joined it, or was given its id", n.id.Name, n.id.ClusterID)
		}
		h, err := checkHello(n.id, foundingHash(n.id.Members), from, req)
		if err != nil {
			return nil, err
		}
		if f.Nonces[h.name] != h.nonce {
			n.log.Warn("a founder came back with another data directory: it cannot take part again (remove it and join a new node)", "founder", h.name)
		}
		return helloAnswer{founded: true, nonce: f.Nonce, clusterID: n.id.ClusterID, nonces: f.Nonces}.marshal(), nil
	case queryClientURL:
		r := reader{b: req[1:]}
		cluster := r.uint64()
		switch {
		case r.end() != nil:
			return nil, fmt.Errorf("bad client URL request: %w", r.end())
		case cluster != n.id.ClusterID:
			return nil, fmt.Errorf("%s belongs to cluster %016x, not %016x", n.id.Name, n.id.ClusterID, cluster)
		case n.cfg.ClientURL == "":
			return nil, fmt.Errorf("%s serves no clients", n.id.Name)
		}
		return []byte(n.cfg.ClientURL), nil
	}
	return nil, fmt.Errorf("unknown query kind %d", req[0])
}

// LeaderClientURL returns the leader's ClientURL, asking it over the peer
// network, so that a request only the leader serves can be sent there. It
// fails with ErrNoLeader when no leader is known.
func (n *Node) LeaderClientURL(ctx context.Context) (string, error) {
	st := n.Status()
	switch st.Lead {
	case raftpb.None:
		return "", fmt.Errorf("find the leader's client URL: %w", ErrNoLeader)
	case st.ID:
		if n.cfg.ClientURL == "" {
			return "", errors.New("find the leader's client URL: this node leads and serves no clients")
		}
		return n.cfg.ClientURL, nil
	}
	m, ok := st.Member(st.Lead)
	if !ok || m.Addr == "" {
		return "", fmt.Errorf("find the leader's client URL: the leader %s has no known peer address", st.Name(st.Lead))
	}
	b, err := n.trans.Query(ctx, m.ID, m.Addr, clientURLRequest(st.ClusterID))
	if err != nil {
		return "", fmt.Errorf("ask leader %s for its client URL: %w", m.Name, err)
	}
	if len(b) == 0 || len(b) > maxURLLen {
		return "", fmt.Errorf("ask leader %s for its client URL: an answer of %d bytes", m.Name, len(b))
	}
	return string(b), nil
}
