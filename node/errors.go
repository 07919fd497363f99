package node

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/raft"
)

// Errors returned by a Node, matched with errors.Is. Propose, ReadIndex and
// the membership calls wrap them with what was being done.
var (
	// ErrStopped: the node was stopped (or failed) before the call finished.
	ErrStopped = errors.New("node: stopped")
	// ErrNoLeader: no leader is known, so the request was refused before it
	// left this node. A proposal failing with it was definitely not applied.
	ErrNoLeader = errors.New("node: no leader")
	// ErrOutcomeUnknown: the proposal was handed to raft but the call ended
	// (context expired, node stopped) before it was seen applied. It may or
	// may not be applied later; only a read can tell.
	ErrOutcomeUnknown = errors.New("node: proposal outcome unknown")
	// ErrProposalTooLarge: the proposal exceeds Config.MaxProposalBytes; it
	// was not applied.
	ErrProposalTooLarge = errors.New("node: proposal too large")
	// ErrNotMember: the id given names no member of the cluster.
	ErrNotMember = errors.New("node: not a member")
	// ErrMembershipMismatch: the data directory belongs to another node or
	// cluster than the configuration says.
	ErrMembershipMismatch = errors.New("node: data directory belongs to another node or cluster")

	// ErrNotLeader: a membership change was asked of a node that is not
	// the leader. The error is a *NotLeaderError naming the leader, if
	// one is known, so that the caller can ask it instead.
	ErrNotLeader = errors.New("node: not the leader")
	// ErrMemberExists: the member to add has the name or the peer address
	// of a member.
	ErrMemberExists = errors.New("node: member exists")
	// ErrLastVoter: the change would leave the cluster without a voter.
	ErrLastVoter = errors.New("node: cannot remove the last voter")
	// ErrAlreadyVoter: the member to promote is a voter already.
	ErrAlreadyVoter = errors.New("node: already a voter")
	// ErrChangePending: another membership change is under way (it is
	// not applied yet, or the cluster is still leaving the joint
	// configuration it entered); try again once it is done. It wraps
	// raft.ErrConfChangePending.
	ErrChangePending = fmt.Errorf("node: another membership change is under way: %w", raft.ErrConfChangePending)
	// ErrRemoved: this node was removed from the cluster, so it stopped (or
	// refuses to start).
	ErrRemoved = errors.New("node: removed from the cluster")
)

// NotLeaderError is a membership change refused by a node that is not the
// leader. It matches ErrNotLeader.
type NotLeaderError struct {
	// Leader is the leader this node knows of; zero when none.
	Leader Member
}

func (e *NotLeaderError) Error() string {
	if e.Leader.ID == 0 {
		return "node: not the leader, and no leader is known"
	}
	return fmt.Sprintf("node: not the leader; the leader is %s (peer address %s)", e.Leader.Name, e.Leader.Addr)
}

// Is makes the error match ErrNotLeader, and ErrNoLeader when no leader is
// known.
func (e *NotLeaderError) Is(target error) bool {
	return target == ErrNotLeader || (target == ErrNoLeader && e.Leader.ID == 0)
}
