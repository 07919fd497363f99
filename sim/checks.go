package sim

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// Rules the checker enforces; a Violation names one of them.
const (
	RuleElectionSafety     = "election safety"      // at most one leader per term, ever
	RuleLogMatching        = "log matching"         // same index and term => identical prefixes
	RuleLeaderCompleteness = "leader completeness"  // committed entries survive in later-term logs
	RuleStateMachine       = "state machine safety" // one entry per index, applied once, in order
	RuleMonotonic          = "monotonic state"      // terms and commit indexes never go back
	RuleVote               = "vote stability"       // a persisted vote never changes within its term
	RuleDurability         = "durability"           // what is committed or applied is on disk
	RuleReadIndex          = "linearizable read"    // a read index covers every earlier commit
	RuleLinearizable       = "linearizability"      // kv clients' history is linearizable
	RuleMembership         = "membership"           // configurations agree; removed and non-voting nodes keep out
	RuleContract           = "core contract"        // Ready, Step and New behave as documented
	RuleLiveness           = "liveness"             // after healing, a leader commits a proposal
)

// Violation is a broken rule: the run stops at the first one.
type Violation struct {
	Rule   string
	Detail string
}

func (v *Violation) Error() string { return v.Rule + ": " + v.Detail }

// checker watches every node and remembers the cluster's history: leaders
// per term, every (index, term) ever made durable, and the committed log.
// The cluster calls it at each point where a rule can first break; it never
// looks inside a core, only at Status, Ready and the simulated disks.
type checker struct {
	nodes []nodeHistory
	disks []*raft.MemoryStorage

	leaders map[uint64]uint64 // term -> the node observed leading it

	// logKeys maps every (index, term) any node ever persisted to the
	// entry's content and the term of the entry before it. While this
	// stays a function, log matching holds across all logs: by induction
	// on the index, equal (index, term) means equal prefixes.
	logKeys map[[2]uint64]logKey

	// committed[i-1] is the entry committed at index i: the committed
	// entries of all nodes form one log.
	committed []committedEntry
	// firstSeen buckets committed indexes by the lowest term in which
	// any node was seen holding them committed: firstSeen[t] is the
	// highest such index. See leaderCompleteness.
	firstSeen map[uint64]uint64

	// stale lists the nodes whose logs leaderCompleteness must look at
	// again at the end of the step; allStale means every node's.
	stale    []bool
	allStale bool

	snapshots map[uint64]uint64 // snapshot index -> hash of its data and configuration

	// confs maps the index of every conf change entry any node applied to
	// the outcome; every node must come to the same one. latestConf is
	// the outcome at the highest such index: the configuration in effect
	// now. changes counts them, the bootstrap aside.
	confs      map[uint64]confOutcome
	latestConf uint64
	changes    uint64
	// members lists every node some configuration ever listed; removed,
	// those that learned they were removed (and were not added back).
	members, removed map[uint64]bool
	reads            map[uint64]uint64 // read id -> the lowest index that answers it linearizably
	maxCommit        uint64            // highest commit index any node has reported

	err *Violation
}

// nodeHistory is what the checker remembers of one node across crashes.
type nodeHistory struct {
	term, commit uint64 // last seen in Status, this incarnation
	vote         uint64 // last seen in Status
	// removedReady: the node knew it was removed when its runtime took a
	// Ready, so every message of its later Readies was made knowing it.
	removedReady bool
	hs           raftpb.HardState // last persisted
	nextApply    uint64           // the index the state machine must apply next
	recorded     uint64           // durable commits recorded into checker.committed up to here
}

// confOutcome is what applying one conf change entry led to.
type confOutcome struct {
	conf    raftpb.ConfState
	invalid bool // the core refused it: the configuration stayed as it was
}

type logKey struct {
	content  uint64 // hash of the entry's type and data
	prevTerm uint64
}

type committedEntry struct {
	term, content uint64
	in            uint64 // lowest term of a node seen holding it committed
}

func newChecker(disks []*raft.MemoryStorage) *checker {
	k := &checker{
		nodes:     make([]nodeHistory, len(disks)),
		stale:     make([]bool, len(disks)),
		disks:     disks,
		leaders:   map[uint64]uint64{},
		logKeys:   map[[2]uint64]logKey{},
		firstSeen: map[uint64]uint64{},
		snapshots: map[uint64]uint64{},
		reads:     map[uint64]uint64{},
		confs:     map[uint64]confOutcome{},
		members:   map[uint64]bool{},
		removed:   map[uint64]bool{},
	}
	for i := range k.nodes {
		k.nodes[i].nextApply = 1
	}
	return k
}

func (k *checker) failf(rule, format string, args ...any) {
	if k.err == nil {
		k.err = &Violation{Rule: rule, Detail: fmt.Sprintf(format, args...)}
	}
}

func contentHash(e *raftpb.Entry) uint64 {
	h := fnv.New64a()
	h.Write([]byte{byte(e.Type)})
	h.Write(e.Data)
	return h.Sum64()
}

// observe checks a live node's Status after anything touched its core.
func (k *checker) observe(id uint64, st raft.Status) {
	n := &k.nodes[id-1]
	if st.ID != id {
		k.failf(RuleContract, "node %d reports id %d", id, st.ID)
	}
	if st.Role == raft.Leader {
		k.leads(id, st.Term)
	}
	if st.Lead != raftpb.None {
		// A follower learns its leader from leader-only messages, so
		// whoever it follows in a term must be that term's one leader.
		k.leads(st.Lead, st.Term)
	}
	if st.Term < n.term {
		k.failf(RuleMonotonic, "node %d's term went back from %d to %d", id, n.term, st.Term)
	}
	if st.Commit < n.commit {
		k.failf(RuleMonotonic, "node %d's commit index went back from %d to %d", id, n.commit, st.Commit)
	}
	if st.Term == n.hs.Term && n.hs.Vote != raftpb.None && st.Vote != n.hs.Vote {
		k.failf(RuleVote, "node %d persisted a vote for %d in term %d but now votes for %d", id, n.hs.Vote, st.Term, st.Vote)
	}
	if st.Applied > st.Commit {
		k.failf(RuleContract, "node %d applied %d past its commit index %d", id, st.Applied, st.Commit)
	}
	k.observeMembership(id, st)
	n.term, n.commit, n.vote = st.Term, st.Commit, st.Vote
	k.maxCommit = max(k.maxCommit, st.Commit)
}

// observeMembership checks a node's role against its configuration: only a
// voter campaigns or leads, and a node that knows it was removed takes no
// part until a configuration lists it again.
func (k *checker) observeMembership(id uint64, st raft.Status) {
	h := &k.nodes[id-1]
	if k.removed[id] && st.Vote != raftpb.None && (st.Vote != h.vote || st.Term != h.term) {
		k.failf(RuleMembership, "node %d votes for %d in term %d after it learned it was removed", id, st.Vote, st.Term)
	}
	switch {
	case st.Removed:
		k.removed[id] = true
	case k.removed[id] && isMember(st.Config, id):
		// Added back: what it sends from now on is a member's again
		// (and its next Ready may mix both, so it is not checked).
		delete(k.removed, id)
		h.removedReady = false
	}
	if st.Role == raft.Follower {
		return
	}
	switch {
	case k.removed[id]:
		k.failf(RuleMembership, "node %d is %v in term %d after it learned it was removed", id, st.Role, st.Term)
	case !isVoter(st.Config, id):
		k.failf(RuleMembership, "node %d is %v in term %d but is not a voter of its configuration %v", id, st.Role, st.Term, st.Config)
	}
}

// isVoter reports whether id votes in cs (in either half, when joint).
func isVoter(cs raftpb.ConfState, id uint64) bool {
	return slices.Contains(cs.Voters, id) || slices.Contains(cs.VotersOutgoing, id)
}

// isMember reports whether cs lists id in any role.
func isMember(cs raftpb.ConfState, id uint64) bool {
	return isVoter(cs, id) || slices.Contains(cs.Learners, id) || slices.Contains(cs.LearnersNext, id)
}

// confApplied checks the outcome of node id applying the conf change entry
// at index, coming from configuration prev: every node must reach the same
// one, and a node that applies a configuration without itself, having been
// in prev, must say it is removed (st: its Status now; after a restart the
// core already runs the last configuration of its log, and answers entries
// applied again with what they led to).
func (k *checker) confApplied(id, index uint64, prev raftpb.ConfState, out confOutcome, st raft.Status) {
	current := slices.Equal(confKey(st.Config), confKey(out.conf))
	if !out.invalid && current && isMember(prev, id) && !isMember(out.conf, id) && !st.Removed {
		k.failf(RuleMembership, "node %d applied %v at %d, which leaves it out, but does not say it is removed", id, out.conf, index)
	}
	if old, ok := k.confs[index]; ok {
		if old.invalid != out.invalid || !slices.Equal(confKey(old.conf), confKey(out.conf)) {
			k.failf(RuleMembership, "node %d applied the conf change at %d as %v (refused: %t), another node as %v (refused: %t)",
				id, index, out.conf, out.invalid, old.conf, old.invalid)
		}
		return
	}
	k.confs[index] = out
	k.latestConf = max(k.latestConf, index)
	if index > 1 {
		k.changes++
	}
	for _, l := range [][]uint64{out.conf.Voters, out.conf.VotersOutgoing, out.conf.Learners, out.conf.LearnersNext} {
		for _, m := range l {
			k.members[m] = true
		}
	}
}

// current returns the configuration in effect: the outcome of the highest
// conf change any node applied.
func (k *checker) current() raftpb.ConfState { return k.confs[k.latestConf].conf }

// confKey flattens a configuration for comparison.
func confKey(cs raftpb.ConfState) []uint64 {
	var key []uint64
	for _, l := range [][]uint64{cs.Voters, cs.VotersOutgoing, cs.Learners, cs.LearnersNext} {
		key = append(key, uint64(len(l)))
		key = append(key, l...)
	}
	return key
}

// leads records that node id acted as the leader of term.
func (k *checker) leads(id, term uint64) {
	if l, ok := k.leaders[term]; ok && l != id {
		k.failf(RuleElectionSafety, "nodes %d and %d both led term %d", l, id, term)
	} else if !ok {
		k.leaders[term] = id
	}
}

// restarted resets the per-incarnation history of a node that just came
// back with its state machine at applied, and checks what it reloaded.
func (k *checker) restarted(id, applied uint64, st raft.Status) {
	n := &k.nodes[id-1]
	// What was persisted is the floor: the node may not come back below it.
	n.term, n.commit, n.vote = n.hs.Term, n.hs.Commit, n.hs.Vote
	n.nextApply = applied + 1
	// What a node knows of its removal is what its core says from now on:
	// one rebuilt from a snapshot that no longer lists it cannot tell it
	// from a node about to join (and may vote again, which is safe).
	delete(k.removed, id)
	n.removedReady = false
	k.observe(id, st)
}

// ready checks a Ready against the contract before the runtime acts on it.
func (k *checker) ready(id uint64, n int, rd *raft.Ready) {
	h := &k.nodes[id-1]
	for _, m := range rd.Messages {
		switch m.Type {
		case raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap, raftpb.MsgTimeoutNow, raftpb.MsgProp:
		default:
			k.failf(RuleContract, "node %d may send %v before persisting", id, m)
		}
	}
	for _, msgs := range [][]raftpb.Message{rd.Messages, rd.MessagesAfterPersist} {
		for _, m := range msgs {
			k.message(id, n, m)
			if h.removedReady {
				k.removedSends(id, m)
			}
			switch m.Type {
			case raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap, raftpb.MsgTimeoutNow:
				// Only a leader sends these: even a leadership too
				// brief for Status to show counts.
				k.leads(id, m.Term)
			}
		}
	}
	h.removedReady = k.removed[id]
	changed := !rd.HardState.IsEmpty() && (rd.HardState.Term != h.hs.Term || rd.HardState.Vote != h.hs.Vote)
	if (changed || len(rd.Entries) > 0 || !rd.Snapshot.IsEmpty()) && !rd.MustSync {
		k.failf(RuleContract, "node %d's Ready needs a sync (hard state %+v, %d entries) but MustSync is false", id, rd.HardState, len(rd.Entries))
	}
	for i := 1; i < len(rd.Entries); i++ {
		if rd.Entries[i].Index != rd.Entries[i-1].Index+1 {
			k.failf(RuleContract, "node %d's Ready.Entries skip from %d to %d", id, rd.Entries[i-1].Index, rd.Entries[i].Index)
		}
	}
}

// removedSends checks a message a node made after it learned it was
// removed: it may answer, but never grant a vote or ask for one.
func (k *checker) removedSends(id uint64, m raftpb.Message) {
	switch m.Type {
	case raftpb.MsgVote, raftpb.MsgPreVote:
		k.failf(RuleMembership, "node %d campaigns (%v) after it learned it was removed", id, m)
	case raftpb.MsgVoteResp, raftpb.MsgPreVoteResp:
		if !m.Reject {
			k.failf(RuleMembership, "node %d grants a vote (%v) after it learned it was removed", id, m)
		}
	}
}

// message checks the envelope of a message node id wants to send.
func (k *checker) message(id uint64, n int, m raftpb.Message) {
	if m.From != id {
		k.failf(RuleContract, "node %d sends %v under another name", id, m)
	}
	if m.To == id || m.To == raftpb.None || m.To > uint64(n) {
		k.failf(RuleContract, "node %d sends %v to a bad address", id, m)
	}
	if !m.Type.Valid() || m.Type.IsLocal() {
		k.failf(RuleContract, "node %d sends %v, which is not a peer message", id, m)
	}
}

// persisted checks what a node just made durable from rd.
func (k *checker) persisted(id uint64, rd *raft.Ready) {
	h := &k.nodes[id-1]
	disk := k.disks[id-1]
	if hs := rd.HardState; !hs.IsEmpty() {
		switch {
		case hs.Term < h.hs.Term:
			k.failf(RuleMonotonic, "node %d persisted term %d after term %d", id, hs.Term, h.hs.Term)
		case hs.Commit < h.hs.Commit:
			k.failf(RuleMonotonic, "node %d persisted commit %d after commit %d", id, hs.Commit, h.hs.Commit)
		case hs.Term == h.hs.Term && h.hs.Vote != raftpb.None && hs.Vote != h.hs.Vote:
			k.failf(RuleVote, "node %d persisted a vote for %d in term %d, then a vote for %d", id, h.hs.Vote, hs.Term, hs.Vote)
		}
		h.hs = hs
	}
	last, _ := disk.LastIndex()
	if h.hs.Commit > last {
		k.failf(RuleDurability, "node %d persisted commit index %d past its last durable entry %d", id, h.hs.Commit, last)
		return
	}
	if s := rd.Snapshot; !s.IsEmpty() {
		k.snapshot(id, s)
	}
	for i := range rd.Entries {
		e := &rd.Entries[i]
		prev, err := disk.Term(e.Index - 1)
		if err != nil {
			continue // compacted: the snapshot vouches for it
		}
		if e.Term < prev {
			k.failf(RuleLogMatching, "node %d's log has term %d at %d after term %d", id, e.Term, e.Index, prev)
		}
		key, val := [2]uint64{e.Index, e.Term}, logKey{contentHash(e), prev}
		if old, ok := k.logKeys[key]; !ok {
			k.logKeys[key] = val
		} else if old != val {
			k.failf(RuleLogMatching, "node %d persisted entry %d/%d (content %x, previous term %d) but another log has %d/%d with content %x, previous term %d",
				id, e.Index, e.Term, val.content, val.prevTerm, e.Index, e.Term, old.content, old.prevTerm)
		}
	}
	k.recordCommitted(id)
	k.stale[id-1] = true
}

// recordCommitted adds the durable entries up to a node's persisted commit
// index to the committed log. The disk is consistent with that index right
// after a Ready is persisted: the Ready carried every entry the core had.
func (k *checker) recordCommitted(id uint64) {
	h := &k.nodes[id-1]
	disk := k.disks[id-1]
	first, _ := disk.FirstIndex()
	lo := max(h.recorded+1, first)
	for lo <= h.hs.Commit {
		ents, err := disk.Entries(lo, h.hs.Commit+1, 1<<20)
		if err != nil {
			k.failf(RuleDurability, "node %d cannot read its committed entries %d-%d: %v", id, lo, h.hs.Commit, err)
			return
		}
		for i := range ents {
			k.commit(id, &ents[i], h.hs.Term)
		}
		lo += uint64(len(ents))
	}
	h.recorded = max(h.recorded, h.hs.Commit)
}

// commit records that node id holds e committed while in term `in`.
func (k *checker) commit(id uint64, e *raftpb.Entry, in uint64) {
	c := committedEntry{term: e.Term, content: contentHash(e), in: in}
	switch {
	case e.Index <= uint64(len(k.committed)):
		old := &k.committed[e.Index-1]
		if old.term != c.term || old.content != c.content {
			k.failf(RuleStateMachine, "node %d committed %d/%d (content %x) where %d/%d (content %x) was committed before",
				id, e.Index, e.Term, c.content, e.Index, old.term, old.content)
			return
		}
		if in >= old.in {
			return
		}
		old.in = in
	case e.Index == uint64(len(k.committed))+1:
		k.committed = append(k.committed, c)
	default:
		// Past a gap (only possible behind a snapshot that nobody
		// recorded): the next commit after the gap fills it.
		return
	}
	k.firstSeen[in] = max(k.firstSeen[in], e.Index)
	// A new committed entry constrains every log, not just this one.
	k.allStale = true
}

// endStep runs the checks that are cheaper once per step than at each
// change.
func (k *checker) endStep() {
	for i := range k.stale {
		if k.allStale || k.stale[i] {
			k.leaderCompleteness(uint64(i + 1))
		}
		k.stale[i] = false
	}
	k.allStale = false
}

// leaderCompleteness checks node id's durable log against the committed
// log. Entries of term T are made only by the leader of T, and a log holding
// one agrees with that leader's log up to it; that leader held every entry
// committed in a term before T. So a log whose last entry has term T must
// hold every committed entry first seen committed before T, up to its last
// index. Log matching (checked separately) lets us test only the highest
// such index: agreeing there means agreeing on the whole prefix.
func (k *checker) leaderCompleteness(id uint64) {
	disk := k.disks[id-1]
	last, _ := disk.LastIndex()
	first, _ := disk.FirstIndex()
	lastTerm, err := disk.Term(last)
	if last == 0 || err != nil {
		return
	}
	var upTo uint64
	for in, idx := range k.firstSeen {
		if in < lastTerm {
			upTo = max(upTo, idx)
		}
	}
	i := min(last, upTo)
	if i == 0 || i < first-1 {
		return
	}
	if t, _ := disk.Term(i); t != k.committed[i-1].term {
		c := k.committed[i-1]
		k.failf(RuleLeaderCompleteness, "node %d's durable log ends at %d/%d but holds %d/%d where %d/%d was committed in term %d: the leader of term %d lacked a committed entry",
			id, last, lastTerm, i, t, i, c.term, c.in, lastTerm)
	}
}

// snapshot checks a snapshot a node installed or made: every snapshot of an
// index must hold the same data, and cover the committed entry there.
func (k *checker) snapshot(id uint64, s raftpb.Snapshot) {
	idx := s.Metadata.Index
	sum := fnv.New64a()
	sum.Write(s.Data)
	for _, v := range confKey(s.Metadata.ConfState) {
		sum.Write(binary.BigEndian.AppendUint64(nil, v))
	}
	if old, ok := k.snapshots[idx]; ok && old != sum.Sum64() {
		k.failf(RuleStateMachine, "node %d's snapshot at %d differs from an earlier snapshot at that index (data or configuration %v)", id, idx, s.Metadata.ConfState)
	}
	k.snapshots[idx] = sum.Sum64()
	if idx <= uint64(len(k.committed)) && k.committed[idx-1].term != s.Metadata.Term {
		k.failf(RuleStateMachine, "node %d's snapshot at %d has term %d, but %d/%d is committed there",
			id, idx, s.Metadata.Term, idx, k.committed[idx-1].term)
	}
}

// restored notes that node id's state machine now stands at index.
func (k *checker) restored(id, index uint64) {
	h := &k.nodes[id-1]
	if index+1 < h.nextApply {
		// A snapshot the core handed over must move the state machine
		// forward, never rewind it (it would apply entries twice).
		k.failf(RuleStateMachine, "node %d restored a snapshot at %d after applying up to %d", id, index, h.nextApply-1)
	}
	h.nextApply = index + 1
}

// applied checks one entry node id hands to its state machine.
func (k *checker) applied(id uint64, e *raftpb.Entry) {
	h := &k.nodes[id-1]
	disk := k.disks[id-1]
	if e.Index != h.nextApply {
		k.failf(RuleStateMachine, "node %d applied index %d, expected %d next", id, e.Index, h.nextApply)
		return
	}
	h.nextApply++
	if e.Index > h.hs.Commit {
		k.failf(RuleDurability, "node %d applied %d/%d beyond its persisted commit index %d", id, e.Index, e.Term, h.hs.Commit)
	}
	last, _ := disk.LastIndex()
	first, _ := disk.FirstIndex()
	switch {
	case e.Index > last:
		k.failf(RuleDurability, "node %d applied %d/%d beyond its last durable entry %d", id, e.Index, e.Term, last)
	case e.Index >= first:
		d, err := disk.Entries(e.Index, e.Index+1, 0)
		if err != nil || d[0].Term != e.Term || contentHash(&d[0]) != contentHash(e) {
			k.failf(RuleDurability, "node %d applied %d/%d which differs from its durable entry (%v, err %v)", id, e.Index, e.Term, d, err)
		}
	}
	k.commit(id, e, h.hs.Term)
}

// readIssued registers a read index request and returns its id: at this
// moment, every index some node reports committed must be covered.
func (k *checker) readIssued(rid uint64) { k.reads[rid] = k.maxCommit }

// readAnswered checks a read index a node returned.
func (k *checker) readAnswered(id uint64, rs raft.ReadState) {
	if len(rs.Context) != 8 {
		k.failf(RuleReadIndex, "node %d answered a read with context %x that no client sent", id, rs.Context)
		return
	}
	rid := binary.BigEndian.Uint64(rs.Context)
	floor, ok := k.reads[rid]
	switch {
	case !ok:
		k.failf(RuleReadIndex, "node %d answered read %d that no client sent", id, rid)
	case rs.Index < floor:
		k.failf(RuleReadIndex, "node %d answered read %d with index %d, but %d was committed before the read began", id, rid, rs.Index, floor)
	}
}
