package raft

import (
	"fmt"
	"maps"
	"slices"

	"github.com/raftkv/raftkv/raft/confchange"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// Membership: how the core proposes, applies and obeys configuration
// changes. What a change does to a configuration is package confchange's
// business; when it may be proposed and when it takes effect is decided
// here.
//
// A change takes effect when the runtime's state machine applies its entry
// (ApplyConfChange), on every node in log order, never when it is appended:
// every node then switches at the same point of the same log. A leader lets
// only one change be in flight: it proposes the next only once the state
// machine has applied the previous (AppliedTo), so the change is judged
// against the configuration it will apply to.

// appliedConf is the outcome of applying the conf change entry at index.
type appliedConf struct {
	index uint64
	conf  raftpb.ConfState
	err   error
}

// Bootstrap returns the hard state and log a founding member of a new
// cluster persists before its first New: entry 1, of term 1, is the
// EntryConfChange adding every founding voter, and the hard state commits
// it. The result is the same on every founder whatever the order of voters,
// so entry 1 is committed by construction. voters must be non-empty,
// distinct and non-zero; otherwise the entry is refused when applied and the
// node starts as a non-member.
func Bootstrap(voters []uint64) (raftpb.HardState, []raftpb.Entry) {
	cc := raftpb.ConfChange{}
	for _, id := range slices.Sorted(slices.Values(voters)) {
		cc.Changes = append(cc.Changes, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddVoter, NodeID: id})
	}
	ent := raftpb.Entry{Term: 1, Index: 1, Type: raftpb.EntryConfChange, Data: cc.Marshal()}
	return raftpb.HardState{Term: 1, Commit: 1}, []raftpb.Entry{ent}
}

// ProposeConfChange proposes a membership change. On the leader it checks cc
// against the configuration in effect and the pending rule and appends an
// EntryConfChange entry; it returns ErrProposalDropped (no leader, or a
// leadership transfer under way), ErrConfChangePending (the previous change,
// or for a new leader any entry of its log, is not applied yet: see
// AppliedTo) or ErrInvalidConfChange with the reason. On a follower the
// change is forwarded to the leader, which drops it silently if it refuses
// it. Success does not mean the change will commit.
//
// The core cannot tell "promote a learner" from "add a voter": both are
// ConfChangeAddVoter. A runtime offering a promote operation checks that
// the node is a learner in ConfState() first.
func (c *Core) ProposeConfChange(cc raftpb.ConfChange) error {
	return c.stepLocal(raftpb.Message{Type: raftpb.MsgProp, Entries: []raftpb.Entry{{Type: raftpb.EntryConfChange, Data: cc.Marshal()}}})
}

// admitConfChange decides, on the leader, whether the EntryConfChange with
// data may be appended at index, and records it as the pending change.
func (c *Core) admitConfChange(data []byte, index uint64) error {
	cc, err := raftpb.UnmarshalConfChange(data)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfChange, err)
	}
	if !c.cfg.Knobs.AllowConcurrentConfChanges && c.pendingConfIndex > c.appliedIndex {
		return fmt.Errorf("%w: entries up to %d may hold a change, the state machine applied up to %d", ErrConfChangePending, c.pendingConfIndex, c.appliedIndex)
	}
	if _, err := c.nextConf(cc); err != nil {
		return err
	}
	c.pendingConfIndex = index
	return nil
}

// ApplyConfChange is called by the runtime when its state machine applies
// the committed EntryConfChange entry at index, in log order, once per
// entry, from the goroutine that drives the core. It switches the
// configuration and returns the new one, which the runtime records with its
// state machine for its snapshots.
//
// A change that is invalid against the configuration at that point (only a
// buggy or hostile proposer can get one committed) leaves the configuration
// as it is and returns an error wrapping ErrInvalidConfChange: every node
// decides the same way. An index at or below the last change already
// applied (the runtime re-applying entries after a restart, when New has
// rebuilt the configuration from the log) changes nothing and returns the
// configuration and error that entry led to. An entry whose Data does not
// decode (raftpb.UnmarshalConfChange) is not a change: the runtime skips it,
// as New does.
func (c *Core) ApplyConfChange(index uint64, cc raftpb.ConfChange) (raftpb.ConfState, error) {
	if index <= c.confIndex {
		for _, r := range c.replayed {
			if r.index == index {
				return cloneConfState(r.conf), r.err
			}
		}
		return cloneConfState(c.conf), nil
	}
	if index > c.log.applying {
		return cloneConfState(c.conf), fmt.Errorf("raft: apply conf change at index %d: only entries up to %d were handed out to apply", index, c.log.applying)
	}
	c.replayed = nil
	return c.applyConfChange(index, cc)
}

func (c *Core) applyConfChange(index uint64, cc raftpb.ConfChange) (raftpb.ConfState, error) {
	c.confIndex = index
	next, err := c.nextConf(cc)
	if err != nil {
		return cloneConfState(c.conf), fmt.Errorf("raft: apply conf change %v at index %d: %w", cc, index, err)
	}
	c.switchConfig(next)
	return cloneConfState(next), nil
}

// nextConf is the configuration cc leads to from the one in effect, bent by
// the testing knobs that break membership changes.
func (c *Core) nextConf(cc raftpb.ConfChange) (raftpb.ConfState, error) {
	base := c.conf
	if c.cfg.Knobs.AllowConcurrentConfChanges && base.Joint() && !cc.IsLeaveJoint() {
		// Broken on purpose: a change arriving while joint builds on
		// the incoming configuration, cutting short the joint phase that
		// made the previous change safe. Leaving a valid joint
		// configuration cannot fail.
		base, _ = confchange.Apply(base, raftpb.ConfChange{})
	}
	next, err := confchange.Apply(base, cc)
	if err == nil && c.cfg.Knobs.SkipJointConsensus && next.Joint() {
		// Broken on purpose: straight from C_old to C_new.
		next, err = confchange.Apply(next, raftpb.ConfChange{})
	}
	return next, err
}

// AppliedTo tells the core that the state machine has applied every entry
// up to index: really applied, conf changes included (ApplyConfChange was
// called for each), not merely handed out in a Ready. Call it after
// applying a snapshot too. A leader proposes a new change, including the
// one that leaves a joint configuration, only once the previous one is
// applied by this measure.
func (c *Core) AppliedTo(index uint64) {
	// Nothing beyond what was handed out (or restored) can be applied.
	c.appliedIndex = max(c.appliedIndex, min(index, c.log.applying))
	c.maybeLeaveJoint()
}

// maybeLeaveJoint has a leader propose leaving the joint configuration
// once the entry that entered it is applied and nothing else is pending.
func (c *Core) maybeLeaveJoint() {
	if c.role != Leader || !c.conf.Joint() || c.pendingConfIndex > c.appliedIndex || c.leadTransferee != raftpb.None {
		return
	}
	leave := raftpb.ConfChange{}
	c.pendingConfIndex = c.log.lastIndex() + 1
	c.appendEntries([]raftpb.Entry{{Type: raftpb.EntryConfChange, Data: leave.Marshal()}})
}

// ConfState returns the configuration in effect: the last one applied. The
// result shares nothing with the core.
func (c *Core) ConfState() raftpb.ConfState { return cloneConfState(c.conf) }

// restoreConfig rebuilds the configuration in New: stored (the snapshot's,
// taken at snapIndex, or voters when Storage holds none), then every
// committed EntryConfChange after the snapshot, in order. The outcomes of
// entries the state machine has not applied are kept for ApplyConfChange to
// answer when the runtime applies them again.
func (c *Core) restoreConfig(stored raftpb.ConfState, snapIndex uint64, voters []uint64) error {
	base := cloneConfState(stored)
	if isEmptyConf(base) {
		base = raftpb.ConfState{Voters: slices.Sorted(slices.Values(voters))}
	}
	if err := confchange.Validate(base); err != nil {
		return fmt.Errorf("raft: stored configuration %v: %w", base, err)
	}
	c.switchConfig(base)
	// The snapshot holds every change up to its index, even those in
	// entries the store kept from before it for lagging followers:
	// applied again, "add learner 4" would demote voter 4.
	c.confIndex = max(c.log.firstIndex()-1, snapIndex)
	for lo := c.confIndex + 1; lo <= c.log.committed; {
		ents, err := c.log.slice(lo, c.log.committed+1, c.cfg.MaxCommittedSizePerReady)
		if err != nil {
			return fmt.Errorf("raft: read committed entries from %d for their configuration changes: %w", lo, err)
		}
		for _, e := range ents {
			if e.Type != raftpb.EntryConfChange {
				continue
			}
			cc, err := raftpb.UnmarshalConfChange(e.Data)
			if err != nil {
				continue // not a change, on any node
			}
			cs, err := c.applyConfChange(e.Index, cc)
			if e.Index > c.log.applied {
				c.replayed = append(c.replayed, appliedConf{index: e.Index, conf: cs, err: err})
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	return nil
}

// switchConfig makes cs the configuration in effect.
func (c *Core) switchConfig(cs raftpb.ConfState) {
	oldVoters := c.trk.voters.IDs()
	c.conf = cs
	c.trk.setConfig(cs, c.ghosts(oldVoters, cs))
	if c.trk.isMember(c.id) {
		c.wasMember = true
		c.removed = false
	} else {
		c.removed = c.wasMember
	}
	switch c.role {
	case Leader:
	case PreCandidate, Candidate:
		if !c.promotable() {
			c.becomeFollower(c.term, raftpb.None)
		}
		return
	default:
		return
	}
	if c.leadTransferee != raftpb.None && !c.trk.voters.Incoming.Contains(c.leadTransferee) {
		c.leadTransferee = raftpb.None
	}
	for _, id := range slices.Sorted(maps.Keys(c.trk.progress)) {
		if pr := c.trk.progress[id]; id != c.id && !slices.Contains(c.trk.ids, id) {
			// A last word to a peer leaving: the commit index, so that it
			// applies its removal and stops. A peer that misses it stays
			// in the last configuration it applied; PreVote and
			// CheckQuorum keep it from disrupting the cluster (thesis
			// §4.2.3).
			c.send(raftpb.Message{To: id, Type: raftpb.MsgHeartbeat, Commit: min(pr.match, c.log.committed)})
		}
	}
	last := c.log.lastIndex()
	c.trk.syncProgress(func() *progress {
		// Counted active from the start, so that CheckQuorum does not
		// depose the leader before a new peer could answer.
		return &progress{next: last + 1, recentActive: true, inflights: newInflights(c.cfg.MaxInflightMsgs, c.cfg.MaxInflightBytes)}
	})
	if !c.trk.voters.Contains(c.id) {
		c.handOff()
		return
	}
	// New peers need appends; a smaller quorum may commit more.
	c.maybeCommit()
	c.appendsOwed = true
}

// ghosts returns the voters the RemovedNodesKeepVoting knob keeps counting
// after cs removed them: none without the knob.
func (c *Core) ghosts(oldVoters []uint64, cs raftpb.ConfState) []uint64 {
	if !c.cfg.Knobs.RemovedNodesKeepVoting {
		return nil
	}
	var ghosts []uint64
	for _, id := range slices.Concat(c.trk.ghosts, oldVoters) {
		if id != c.id && !slices.Contains(ghosts, id) && !slices.Contains(cs.Voters, id) &&
			!slices.Contains(cs.VotersOutgoing, id) && !slices.Contains(cs.Learners, id) {
			ghosts = append(ghosts, id)
		}
	}
	slices.Sort(ghosts)
	return ghosts
}

// handOff steps a leader down once it is no longer a voter. It first tells
// the most up-to-date voter to campaign at once (after the appends it may
// still lack), so the cluster does not wait out an election timeout.
func (c *Core) handOff() {
	var to uint64
	for _, id := range c.trk.voters.Incoming.IDs() {
		if id != c.id && (to == raftpb.None || c.trk.progress[id].match > c.trk.progress[to].match) {
			to = id
		}
	}
	if to != raftpb.None {
		c.sendAppends(to, c.trk.progress[to])
		c.sendTimeoutNow(to)
	}
	c.becomeFollower(c.term, raftpb.None)
}

func isEmptyConf(cs raftpb.ConfState) bool {
	return len(cs.Voters) == 0 && len(cs.Learners) == 0 && len(cs.VotersOutgoing) == 0 && len(cs.LearnersNext) == 0
}
