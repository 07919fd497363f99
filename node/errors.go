package node

import "errors"

// Errors returned by a Node, matched with errors.Is. Propose and ReadIndex
// wrap them with what was being done.
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
)
