package node

import (
	"fmt"
	"log/slog"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// Status is a node's state at one moment.
type Status struct {
	ID, ClusterID uint64
	Term          uint64
	Vote          uint64 // the member voted for in Term, or 0
	Lead          uint64 // the known leader, or 0
	Role          raft.Role
	Commit        uint64 // highest index known committed
	Applied       uint64 // highest index applied to the state machine
	// Progress is the leader's view of each member's log (self included);
	// nil on other roles.
	Progress map[uint64]raft.Progress
	// Members is shared with the node and other Status values: read only.
	Members []Member
}

// Name returns the name of member id, "none" for 0, or the id in hex when
// it is not a member.
func (s Status) Name(id uint64) string { return nameOf(s.Members, id) }

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

func nameOf(ms []Member, id uint64) string {
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
