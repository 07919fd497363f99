// Package confchange computes how a membership change transforms a
// configuration. It is pure: Apply takes a ConfState and a ConfChange and
// returns the next ConfState or says why the change is refused. The raft
// core decides when a change may be proposed and when it takes effect;
// this package decides what it does.
//
// # Why joint consensus
//
// Raft's safety rests on one fact: any two quorums that can make a decision
// share at least one voter. That voter refuses to vote twice in a term and
// carries every committed entry into the next election, so two leaders
// cannot be elected in one term and a committed entry cannot be overwritten.
//
// Switching directly from one voter set to another breaks that fact while
// the switch is under way. Servers learn the new configuration at different
// moments, so for a while some decide with the old set and some with the
// new one. Going from {1,2,3} to {1,2,3,4,5} in one step, {1,2} is a
// majority of the old set and {3,4,5} a majority of the new one: they share
// nobody, and each can elect its own leader in the same term.
//
// Joint consensus (Raft thesis §4.3) inserts an intermediate configuration,
// C_old,new, in which every decision (commit, election, read confirmation)
// needs a majority of C_old and, separately, a majority of C_new. A server
// still on C_old and one already on C_old,new cannot decide apart, because
// both need a majority of C_old; a server on C_old,new and one on C_new
// cannot either, because both need a majority of C_new. Once the entry that
// enters C_old,new is applied, the leader proposes the entry that leaves it
// for C_new. The joint step costs one more round of agreement, and in
// exchange any set of voters may change at once.
//
// # What single-server changes would risk
//
// The thesis (§4.1) also describes a simpler scheme without a joint phase:
// change at most one voter at a time, since any majority of {1,2,3} and
// any majority of {1,2,3,4} do overlap. Diego Ongaro found a flaw in it in
// 2015 (raft-dev, "bug in single-server membership changes"): the overlap
// argument holds between a configuration and the next one, but not between
// two competing "next" configurations proposed by leaders of different
// terms from the same starting point. Starting from {1,2,3,4}, leader 1
// may log "add 5" and reach only node 5; leader 2, elected in a later term
// by {2,3,4}, may then log and commit "remove 1" with the help of node 3.
// {1,4,5} is a majority of the first and {2,3} of the second: disjoint, so
// node 1 can come back, win an election under its own configuration and
// overwrite what node 2 committed. The fix is that a leader must commit an
// entry of its own term before it proposes a change, which forces it to
// learn about, or overwrite, any competing configuration first.
//
// This package always goes through a joint configuration when the voter
// set changes, so the one-voter restriction does not apply. The core keeps
// the fix's spirit as well: a new leader treats its whole log, including the
// empty entry of its own term it appends on election, as possibly holding a
// pending change, and proposes nothing until the state machine has applied
// all of it.
//
// # What applies directly
//
// Changes that leave the voter set untouched (adding or removing learners)
// apply in one step: learners take no part in any decision. So do changes
// to an empty configuration, which is only ever the start of a cluster
// (raft.Bootstrap): with no voters before, there is nothing to be joint
// with.
package confchange
