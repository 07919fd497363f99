package node

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// Status is a node's state at one moment.
type Status struct {
	ID, ClusterID uint64
	// Self is this node's name.
	Self    string
	Term    uint64
	Vote    uint64 // the member voted for in Term, or 0
	Lead    uint64 // the known leader, or 0
	Role    raft.Role
	Commit  uint64 // highest index known committed
	Applied uint64 // highest index applied to the state machine
	// Progress is the leader's view of each member's log (self included);
	// nil on other roles.
	Progress map[uint64]raft.Progress
	// Config is the configuration in effect: the last one the core
	// applied.
	Config raftpb.ConfState
	// ConfIndex is the index of the last configuration change (or
	// snapshot) that Config and Members reflect.
	ConfIndex uint64
	// Members are the members as of the last configuration change applied,
	// sorted by id. The slice is shared with the node and other Status
	// values: read only.
	Members []MemberState
	// Removed: this node was removed from the cluster; it stops shortly.
	Removed bool
}

// MemberRole is a member's part in the configuration.
type MemberRole string

const (
	// RoleVoter: a member that votes and counts toward commitment.
	RoleVoter MemberRole = "voter"
	// RoleLearner: a member that receives the log but does not vote.
	RoleLearner MemberRole = "learner"
	// RoleLeaving: a voter of the configuration being left, during a
	// change of voters (joint consensus); it goes once the change is done.
	RoleLeaving MemberRole = "leaving"
)

// MemberState is one member and its part in the configuration.
type MemberState struct {
	Member
	Role MemberRole
	// Promote: a learner that joined, which the leader promotes to voter
	// once it has caught up.
	Promote bool
}

// memberStates returns the loop's members with their roles in the core's
// configuration. Members of the configuration the directory does not name
// (it has not caught up, after a restart) are named by their id.
func (n *Node) memberStates() []MemberState {
	cs := n.core.ConfState()
	var out []MemberState
	add := func(id uint64, role MemberRole) {
		if slices.ContainsFunc(out, func(m MemberState) bool { return m.ID == id }) {
			return
		}
		m, ok := n.dir.get(id)
		if !ok {
			m.Member = Member{Name: fmt.Sprintf("%016x", id), ID: id}
			if id == n.id.ID {
				m.Member = Member{Name: n.id.Name, ID: id, Addr: n.id.Addr}
			}
		}
		out = append(out, MemberState{Member: m.Member, Role: role, Promote: m.promote && role == RoleLearner})
	}
	for _, id := range cs.Voters {
		add(id, RoleVoter)
	}
	for _, id := range cs.VotersOutgoing {
		add(id, RoleLeaving)
	}
	for _, id := range slices.Concat(cs.Learners, cs.LearnersNext) {
		add(id, RoleLearner)
	}
	slices.SortFunc(out, func(a, b MemberState) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Name returns the name of member id, "none" for 0, or the id in hex when
// it is not a member.
func (s Status) Name(id uint64) string {
	if id == s.ID && s.Self != "" {
		return s.Self
	}
	return nameOf(s.Members, id)
}

// Member returns member id's state, if it is a member.
func (s Status) Member(id uint64) (MemberState, bool) {
	i := slices.IndexFunc(s.Members, func(m MemberState) bool { return m.ID == id })
	if i < 0 {
		return MemberState{}, false
	}
	return s.Members[i], true
}

// MemberByName returns the state of the member called name, if it is a
// member.
func (s Status) MemberByName(name string) (MemberState, bool) {
	i := slices.IndexFunc(s.Members, func(m MemberState) bool { return m.Name == name })
	if i < 0 {
		return MemberState{}, false
	}
	return s.Members[i], true
}

// LogAttrs returns the status line's fields, in the key=value form the
// original program printed every 2 seconds.
func (s Status) LogAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("id", s.Name(s.ID)),
		slog.String("role", s.Role.String()),
		slog.Uint64("term", s.Term),
		slog.String("leader", s.Name(s.Lead)),
		slog.String("vote", s.Name(s.Vote)),
		slog.Uint64("commit", s.Commit),
		slog.Uint64("applied", s.Applied),
	}
}

func nameOf(ms []MemberState, id uint64) string {
	if id == raftpb.None {
		return "none"
	}
	for _, m := range ms {
		if m.ID == id {
			return m.Name
		}
	}
	return fmt.Sprintf("%x", id)
}
