package confchange

import (
	"errors"
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// ErrInvalid is wrapped by every refusal, with the reason. Package raft
// exports the same value as ErrInvalidConfChange.
var ErrInvalid = errors.New("raft: invalid conf change")

// Apply returns cs changed by cc. A non-empty cc.Changes takes effect
// together: directly when the voter set stays the same or cs has no voters,
// otherwise by entering the joint configuration of the old and new voter
// sets. An empty cc.Changes leaves the joint configuration cs. Any other
// change to a joint configuration is refused.
//
// Apply refuses, wrapping ErrInvalid: a cs that is not a valid
// configuration; node id 0 or an unknown change type; a node named twice in
// one change; adding a voter that is a voter or a learner that is a
// learner; removing a node that is not a member; a result without voters.
// It never modifies cs or cc.
func Apply(cs raftpb.ConfState, cc raftpb.ConfChange) (raftpb.ConfState, error) {
	if err := Validate(cs); err != nil {
		return raftpb.ConfState{}, fmt.Errorf("%w: the current configuration is invalid: %w", ErrInvalid, err)
	}
	if cc.IsLeaveJoint() {
		if !cs.Joint() {
			return raftpb.ConfState{}, fmt.Errorf("%w: leave a joint configuration, but %v is not joint", ErrInvalid, cs)
		}
		learners := toSet(cs.Learners)
		for _, id := range cs.LearnersNext {
			learners[id] = true
		}
		return raftpb.ConfState{Voters: sortedIDs(toSet(cs.Voters)), Learners: sortedIDs(learners)}, nil
	}
	if cs.Joint() {
		return raftpb.ConfState{}, fmt.Errorf("%w: %v while joint in %v: only leaving it is allowed", ErrInvalid, cc, cs)
	}

	voters, learners := toSet(cs.Voters), toSet(cs.Learners)
	seen := make(map[uint64]bool, len(cc.Changes))
	for _, ch := range cc.Changes {
		id := ch.NodeID
		if id == raftpb.None {
			return raftpb.ConfState{}, fmt.Errorf("%w: %v names node 0", ErrInvalid, ch)
		}
		if seen[id] {
			return raftpb.ConfState{}, fmt.Errorf("%w: node %d appears more than once in %v", ErrInvalid, id, cc)
		}
		seen[id] = true
		switch ch.Type {
		case raftpb.ConfChangeAddVoter:
			if voters[id] {
				return raftpb.ConfState{}, fmt.Errorf("%w: add voter %d: it is already a voter", ErrInvalid, id)
			}
			delete(learners, id) // a promotion if it was a learner
			voters[id] = true
		case raftpb.ConfChangeAddLearner:
			if learners[id] {
				return raftpb.ConfState{}, fmt.Errorf("%w: add learner %d: it is already a learner", ErrInvalid, id)
			}
			delete(voters, id) // a demotion if it was a voter
			learners[id] = true
		case raftpb.ConfChangeRemove:
			if !voters[id] && !learners[id] {
				return raftpb.ConfState{}, fmt.Errorf("%w: remove node %d: it is not a member", ErrInvalid, id)
			}
			delete(voters, id)
			delete(learners, id)
		default:
			return raftpb.ConfState{}, fmt.Errorf("%w: unknown change type in %v", ErrInvalid, ch)
		}
	}
	if len(voters) == 0 {
		return raftpb.ConfState{}, fmt.Errorf("%w: %v would leave no voter", ErrInvalid, cc)
	}

	next := raftpb.ConfState{Voters: sortedIDs(voters)}
	old := sortedIDs(toSet(cs.Voters))
	if len(old) == 0 || slices.Equal(next.Voters, old) {
		// No decision changes hands: take effect at once.
		next.Learners = sortedIDs(learners)
		return next, nil
	}
	// Enter C_old,new. A demoted voter still votes in the outgoing half, so
	// it may not be a learner yet: it becomes one on leaving.
	next.VotersOutgoing = old
	for _, id := range old {
		if learners[id] {
			delete(learners, id)
			next.LearnersNext = append(next.LearnersNext, id)
		}
	}
	next.Learners = sortedIDs(learners)
	return next, nil
}

// Validate reports whether cs is a configuration Apply could have produced
// (or the empty one): no node 0, no node listed twice in a list or in two
// roles, LearnersNext only while joint and only for outgoing voters that
// are not incoming ones, and at least one incoming voter while joint or
// with learners. It does not require the lists to be sorted. The core also
// runs it on configurations that arrive in snapshots from peers.
func Validate(cs raftpb.ConfState) error {
	role := make(map[uint64]string)
	put := func(list string, ids []uint64) error {
		for _, id := range ids {
			if id == raftpb.None {
				return fmt.Errorf("%s lists node 0", list)
			}
			if r, ok := role[id]; ok {
				return fmt.Errorf("node %d is in both %s and %s", id, r, list)
			}
			role[id] = list
		}
		return nil
	}
	// Outgoing voters overlap with incoming voters and with learners-next
	// by design, so they are checked on their own.
	if err := put("voters", cs.Voters); err != nil {
		return err
	}
	if err := put("learners", cs.Learners); err != nil {
		return err
	}
	if err := put("learners next", cs.LearnersNext); err != nil {
		return err
	}
	outgoing := make(map[uint64]bool, len(cs.VotersOutgoing))
	for _, id := range cs.VotersOutgoing {
		if id == raftpb.None {
			return errors.New("outgoing voters list node 0")
		}
		if outgoing[id] {
			return fmt.Errorf("node %d is twice in outgoing voters", id)
		}
		if role[id] == "learners" {
			return fmt.Errorf("node %d is both an outgoing voter and a learner", id)
		}
		outgoing[id] = true
	}
	for _, id := range cs.LearnersNext {
		if !outgoing[id] {
			return fmt.Errorf("learner-next %d is not an outgoing voter", id)
		}
	}
	if len(cs.Voters) == 0 && (len(cs.Learners) > 0 || len(cs.VotersOutgoing) > 0) {
		return fmt.Errorf("%v has members but no voter", cs)
	}
	return nil
}

func toSet(ids []uint64) map[uint64]bool {
	s := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		s[id] = true
	}
	return s
}

// sortedIDs returns the members of s in increasing order, nil if none: the
// same shape a decoded ConfState has.
func sortedIDs(s map[uint64]bool) []uint64 {
	if len(s) == 0 {
		return nil
	}
	ids := make([]uint64, 0, len(s))
	for id := range s {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
