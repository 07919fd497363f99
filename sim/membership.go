package sim

import (
	"fmt"
	"math/bits"
	"slices"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// Membership in the simulation. The founders start from raft.Bootstrap, so
// the configuration lives in the log from entry 1 on, as in production.
// While faults last, the fault injector proposes random changes at the
// leader (now and then at another node, which forwards them): add a learner
// (a new node that starts empty and catches up), promote it, demote or
// remove a voter, remove the leader itself, replace a node (add one, remove
// another: a joint configuration), move a majority at once, and now and
// then a second change right behind the first, which a correct leader
// refuses while the first is pending. A node applying a change calls
// ApplyConfChange, and AppliedTo once it applied a batch, as the node
// runtime does. Removed nodes keep running (and crashing and restarting):
// the checker makes sure that once they know, they keep out of elections.
// (Shutting them down is the runtime's business; a node that has not
// applied the end of a joint configuration still needs the votes of the
// configuration being left, whose members may be the removed ones.)

// bootstrap writes raft.Bootstrap's hard state and log to every founder's
// disk and starts it. The joiners' slots stay empty until a change names
// them.
func (c *cluster) bootstrap() {
	founders := make([]uint64, c.opts.Nodes)
	for i := range founders {
		founders[i] = uint64(i + 1)
	}
	hs, ents := raft.Bootstrap(founders)
	for _, id := range founders {
		n := c.nodes[id-1]
		rd := raft.Ready{HardState: hs, Entries: cloneEntries(ents), MustSync: true}
		_ = nodeRuntime{c, n}.Persist(&rd)
		n.born = true
		c.start(n)
	}
	c.updatePresent()
}

// updatePresent tells the network which nodes run or may run again, for
// drawing partitions among them.
func (c *cluster) updatePresent() {
	var ids []uint64
	for _, n := range c.nodes {
		if n.born {
			ids = append(ids, n.id)
		}
	}
	c.net.SetPresent(ids)
}

// join starts a new node with an empty disk: it knows no configuration,
// never campaigns, and waits for a leader to send it the log.
func (c *cluster) join(n *node) {
	n.born = true
	c.note(n.id, "JOIN: starts empty")
	c.start(n)
	c.updatePresent()
}

// changeMembership proposes one random membership change, based on the
// leader's configuration, and now and then a second one right behind it
// (which a correct leader refuses while the first is pending).
func (c *cluster) changeMembership() {
	l := c.leader()
	if l == 0 {
		return
	}
	leader := c.nodes[l-1]
	cs := leader.core.ConfState()
	st := leader.core.Status()
	// Promote only learners that caught up, as the runtime does: a voter
	// far behind holds up every commit until it catches up.
	var ready []uint64
	for _, id := range cs.Learners {
		if pr, ok := st.Progress[id]; ok && pr.Match+caughtUp >= st.Progress[l].Match {
			ready = append(ready, id)
		}
	}
	for {
		cc, what := c.randomChange(cs, l, ready)
		if len(cc.Changes) == 0 {
			return
		}
		at := leader
		if (c.opts.MajorityChanges || !removesVoters(cs, cc)) && c.rng.IntN(5) == 0 {
			at = c.randomLive() // a follower forwards it
		}
		err := at.core.ProposeConfChange(cc)
		res := "ok"
		if err != nil {
			res = err.Error()
		}
		c.note(at.id, "MEMBERSHIP %s: propose %v: %s", what, cc.Changes, res)
		c.touched(at)
		if err != nil || c.rng.IntN(3) != 0 || leader.core == nil {
			return
		}
	}
}

// caughtUp is how far behind the leader a learner may be to be promoted.
const caughtUp = 8

// randomChange draws a change to cs, whose leader is lead and whose
// learners in ready have caught up, and describes it; no change if none
// fits.
func (c *cluster) randomChange(cs raftpb.ConfState, lead uint64, ready []uint64) (raftpb.ConfChange, string) {
	voters, learners := cs.Voters, cs.Learners
	others := slices.DeleteFunc(slices.Clone(voters), func(id uint64) bool { return id == lead })
	pick := func(ids []uint64) uint64 { return ids[c.rng.IntN(len(ids))] }
	one := func(t raftpb.ConfChangeType, id uint64) raftpb.ConfChange {
		return raftpb.ConfChange{Changes: []raftpb.ConfChangeSingle{{Type: t, NodeID: id}}}
	}
	var cc raftpb.ConfChange
	var what string
	kinds := 14
	if c.opts.MajorityChanges {
		kinds += 4 // moving a majority is what a broken core gets wrong
	}
	switch k := c.rng.IntN(kinds); {
	case k < 3: // a new node joins as a learner
		if n := c.newcomer(); n != nil {
			cc, what = one(raftpb.ConfChangeAddLearner, n.id), "add learner"
		}
	case k < 6 && len(ready) > 0:
		cc, what = one(raftpb.ConfChangeAddVoter, pick(ready)), "promote"
	case k < 7 && len(learners) > 0:
		cc, what = one(raftpb.ConfChangeRemove, pick(learners)), "remove learner"
	case k < 8 && len(others) > 0:
		cc, what = one(raftpb.ConfChangeAddLearner, pick(others)), "demote"
	case k < 10 && len(others) > 0:
		cc, what = one(raftpb.ConfChangeRemove, pick(others)), "remove voter"
	case k < 11 && len(voters) > 1:
		cc, what = one(raftpb.ConfChangeRemove, lead), "remove the leader"
	case k < 13 && len(voters) > 0:
		if n := c.newcomer(); n != nil {
			cc, what = one(raftpb.ConfChangeAddVoter, n.id), "replace"
			cc.Changes = append(cc.Changes, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemove, NodeID: pick(voters)})
		}
	case k >= 13 && len(voters) > 1 && c.opts.MajorityChanges:
		// Remove half the voters (the leader perhaps among them) and
		// bring in a learner or a new node: no majority of the old
		// voters is one of the new.
		shuffled := slices.Clone(voters)
		c.rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for _, id := range shuffled[:(len(voters)+1)/2] {
			cc.Changes = append(cc.Changes, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemove, NodeID: id})
		}
		if len(ready) > 0 {
			cc.Changes = append(cc.Changes, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddVoter, NodeID: pick(ready)})
		} else if n := c.newcomer(); n != nil {
			cc.Changes = append(cc.Changes, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddVoter, NodeID: n.id})
		}
		what = "move a majority"
	}
	if !c.opts.MajorityChanges && !keepsMajority(cs, cc) {
		return raftpb.ConfChange{}, ""
	}
	return cc, what
}

// removesVoters reports whether cc takes a voter of cs out of the
// configuration.
func removesVoters(cs raftpb.ConfState, cc raftpb.ConfChange) bool {
	for _, ch := range cc.Changes {
		if ch.Type == raftpb.ConfChangeRemove && slices.Contains(cs.Voters, ch.NodeID) {
			return true
		}
	}
	return false
}

// keepsMajority reports whether a majority of cs's voters are still voters
// once cc is done, joint phase included (a change the core will refuse
// counts as keeping them all). Those voters can then elect a leader among
// themselves whatever the others know; a demoted voter, which never
// campaigns, may be the only one holding the log a candidate needs.
func keepsMajority(cs raftpb.ConfState, cc raftpb.ConfChange) bool {
	next, err := confchange.Apply(cs, cc)
	if err != nil {
		return true
	}
	if next.Joint() {
		next, _ = confchange.Apply(next, raftpb.ConfChange{})
	}
	kept := 0
	for _, id := range cs.Voters {
		if isVoter(next, id) {
			kept++
		}
	}
	return 2*kept > len(cs.Voters)
}

// newcomer returns a node that was never a member, to be added, starting it
// if it never ran; nil if every slot is used. Removed nodes never come
// back: a node that learned it was removed must stay out.
func (c *cluster) newcomer() *node {
	for _, n := range c.nodes {
		if c.check.members[n.id] {
			continue
		}
		if !n.born {
			c.join(n)
		}
		return n
	}
	return nil
}

// markerApplied records that n applied a marker whose mask of nodes that
// applied it is now mask: it commits once a quorum of the configuration in
// effect applied it, and the cluster is live once every member did.
func (c *cluster) markerApplied(mask uint64) {
	cs := c.check.current()
	if !c.committed && quorumIn(cs.Voters, mask) && (len(cs.VotersOutgoing) == 0 || quorumIn(cs.VotersOutgoing, mask)) {
		c.committed = true
		c.stats.RecoveryTicks = (c.now - c.healAt) / TickInterval
	}
	c.live = members(cs)&^mask == 0
}

// quorumIn reports whether the nodes in mask are a majority of ids.
func quorumIn(ids []uint64, mask uint64) bool {
	var in uint64
	for _, id := range ids {
		in |= 1 << (id - 1)
	}
	return 2*bits.OnesCount64(in&mask) > len(ids)
}

// members returns the mask of every node cs lists.
func members(cs raftpb.ConfState) uint64 {
	var m uint64
	for _, l := range [][]uint64{cs.Voters, cs.VotersOutgoing, cs.Learners, cs.LearnersNext} {
		for _, id := range l {
			m |= 1 << (id - 1)
		}
	}
	return m
}

// applyConfChange is the runtime applying the conf change entry e at n.
func (c *cluster) applyConfChange(n *node, e *raftpb.Entry) {
	cc, err := raftpb.UnmarshalConfChange(e.Data)
	if err != nil {
		// The simulator proposes only well-formed changes.
		c.check.failf(RuleContract, "node %d applied conf change %d/%d that does not decode: %v", n.id, e.Index, e.Term, err)
		return
	}
	prev := n.conf
	cs, err := n.core.ApplyConfChange(e.Index, cc)
	out := confOutcome{conf: cs, invalid: err != nil}
	if err == nil {
		n.conf = cs
	}
	if _, seen := c.check.confs[e.Index]; !seen && err == nil {
		c.splitRemoved(prev, cs)
	}
	c.check.confApplied(n.id, e.Index, prev, out, n.core.Status())
	if e.Index > 1 {
		c.note(n.id, "APPLY conf change %d: %v -> %s", e.Index, cc.Changes, confString(out))
	}
}

// splitRemoved, with MajorityChanges, now and then cuts the voters a
// change removes off from the others, the moment the first node applies it.
// They still hold the configuration they knew, and may not hear that the
// change committed: with joint consensus they cannot decide anything
// without the nodes that stay, but a core that skips it lets both sides
// decide alone.
func (c *cluster) splitRemoved(prev, next raftpb.ConfState) {
	if !c.opts.MajorityChanges || c.healed || c.rng.IntN(2) != 0 {
		return
	}
	var removed []uint64
	for _, id := range slices.Concat(prev.Voters, prev.VotersOutgoing) {
		if !isVoter(next, id) && !slices.Contains(removed, id) {
			removed = append(removed, id)
		}
	}
	if len(removed) > 0 {
		slices.Sort(removed)
		c.splitOff(removed, "voters a change removes")
	}
}

func confString(o confOutcome) string {
	if o.invalid {
		return fmt.Sprintf("refused, stays %v", o.conf)
	}
	return fmt.Sprint(o.conf)
}
