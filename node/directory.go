package node

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// The member directory: the names and peer addresses of the members, which
// the core knows only by id. It is replicated state like the configuration
// itself: each conf change entry carries, in its ConfChange.Context, the
// names and addresses of the members it adds (and the id of the proposal,
// so that the proposer's call returns the outcome); every node applies it
// in log order; snapshots carry the whole directory in their node section.
// So the directory is a function of the log, the same on every node at the
// same index, and a restarted node needs no member list of its own.

// memberInfo is one member as the directory knows it.
type memberInfo struct {
	Member
	// promote: a learner that joined, which the leader promotes to voter
	// once it has caught up.
	promote bool
}

// directory is the members as of some applied index, and the ids of those
// removed. It is never changed once built: the apply goroutine builds a new
// one for each change, and the loop, Status and snapshots share them.
//
// Removed ids are remembered so that no id is ever given to a member
// again: the removed node may still be out there with its old log and votes
// (it was partitioned when it was removed), and the cluster could not tell
// its messages from its successor's; one id voting twice in a term can
// elect two leaders. A replacement may take the removed one's name: it gets
// a new id.
type directory struct {
	members []memberInfo // sorted by id
	removed []uint64     // sorted
}

func (d directory) get(id uint64) (memberInfo, bool) {
	i, ok := slices.BinarySearchFunc(d.members, id, func(m memberInfo, id uint64) int { return cmp.Compare(m.ID, id) })
	if !ok {
		return memberInfo{}, false
	}
	return d.members[i], true
}

func (d directory) find(match func(memberInfo) bool) (memberInfo, bool) {
	i := slices.IndexFunc(d.members, match)
	if i < 0 {
		return memberInfo{}, false
	}
	return d.members[i], true
}

// wasRemoved reports whether member id was removed from the cluster.
func (d directory) wasRemoved(id uint64) bool {
	_, ok := slices.BinarySearch(d.removed, id)
	return ok
}

// apply returns the directory after change cc, whose context listed added,
// took the configuration to next.
func (d directory) apply(cc raftpb.ConfChange, added []memberInfo, next raftpb.ConfState) directory {
	byID := make(map[uint64]memberInfo, len(d.members)+len(added))
	for _, m := range d.members {
		byID[m.ID] = m
	}
	removed := slices.Clone(d.removed)
	for _, ch := range cc.Changes {
		m, known := byID[ch.NodeID]
		if i := slices.IndexFunc(added, func(a memberInfo) bool { return a.ID == ch.NodeID }); i >= 0 && ch.Type != raftpb.ConfChangeRemove {
			m, known = added[i], true
		}
		if !known && ch.Type != raftpb.ConfChangeRemove {
			// Added without a name: only a proposer that bypassed the
			// node can do that. The core counts it all the same; it has
			// no address to dial, and Status names it by its id.
			continue
		}
		switch ch.Type {
		case raftpb.ConfChangeAddVoter:
			m.promote = false
			byID[ch.NodeID] = m
		case raftpb.ConfChangeAddLearner:
			byID[ch.NodeID] = m
		case raftpb.ConfChangeRemove:
			// Dropped below once next no longer has it: a voter removed
			// by entering a joint configuration stays until it is left.
		}
	}
	// A member that is no member of next was removed (by this change, or
	// by the joint configuration it leaves).
	for _, m := range d.members {
		if !isMember(next, m.ID) && !slices.Contains(removed, m.ID) {
			removed = append(removed, m.ID)
		}
	}
	out := directory{members: make([]memberInfo, 0, len(byID))}
	for id, m := range byID {
		if isMember(next, id) {
			out.members = append(out.members, m)
		}
	}
	slices.SortFunc(out.members, func(a, b memberInfo) int { return cmp.Compare(a.ID, b.ID) })
	// A committed change may add a removed id back: the core counts it,
	// so the directory follows (only a proposer that bypassed the node
	// can do that).
	out.removed = slices.DeleteFunc(removed, func(id uint64) bool { return isMember(next, id) })
	slices.Sort(out.removed)
	return out
}

func isMember(cs raftpb.ConfState, id uint64) bool {
	for _, ids := range [][]uint64{cs.Voters, cs.VotersOutgoing, cs.Learners, cs.LearnersNext} {
		if slices.Contains(ids, id) {
			return true
		}
	}
	return false
}

// changeContext is what the node puts in a ConfChange's Context:
//
//	version 1 | proposal id u64 | count uvarint | count × member
//	member: id u64 | name (uvarint length, bytes) | addr (uvarint length, bytes) | flags (bit 0: promote)
//
// Names are unique among the members: the node checks that before it
// proposes a change.
//
// An empty Context (the core's own "leave joint" change) is version 1 with
// no proposal and no members.
type changeContext struct {
	proposal uint64 // the proposer's id for the change; 0 for none
	members  []memberInfo
}

const (
	contextVersion   byte = 1
	directoryVersion byte = 1
	// maxMembers bounds the members a context or snapshot lists.
	maxMembers = 4096

	flagPromote byte = 1
)

func (c changeContext) marshal() []byte {
	b := []byte{contextVersion}
	b = binary.BigEndian.AppendUint64(b, c.proposal)
	return appendMembers(b, c.members)
}

func unmarshalChangeContext(b []byte) (changeContext, error) {
	if len(b) == 0 {
		return changeContext{}, nil
	}
	r := reader{b: b}
	if v := r.byte(); v != contextVersion {
		return changeContext{}, fmt.Errorf("conf change context version %d, want %d", v, contextVersion)
	}
	c := changeContext{proposal: r.uint64()}
	c.members = readMembers(&r)
	if err := r.end(); err != nil {
		return changeContext{}, fmt.Errorf("conf change context: %w", err)
	}
	return c, nil
}

// marshal is the directory as a snapshot's node section holds it:
//
//	version 1 | count uvarint | count × member (as in a change context) |
//	removed count uvarint | removed count × id u64
func (d directory) marshal() []byte {
	b := appendMembers([]byte{directoryVersion}, d.members)
	b = binary.AppendUvarint(b, uint64(len(d.removed)))
	for _, id := range d.removed {
		b = binary.BigEndian.AppendUint64(b, id)
	}
	return b
}

// maxRemoved bounds the removed ids a directory lists: 8 MiB of them.
const maxRemoved = 1 << 20

func unmarshalDirectory(b []byte) (directory, error) {
	r := reader{b: b}
	if v := r.byte(); v != directoryVersion {
		return directory{}, fmt.Errorf("member directory version %d, want %d", v, directoryVersion)
	}
	d := directory{members: readMembers(&r)}
	n := r.uvarint(maxRemoved)
	if r.err == nil && n > uint64(len(r.b)/8) {
		r.err = errCutShort
	}
	for range n {
		d.removed = append(d.removed, r.uint64())
	}
	if err := r.end(); err != nil {
		return directory{}, fmt.Errorf("member directory: %w", err)
	}
	byID := func(a, b memberInfo) int { return cmp.Compare(a.ID, b.ID) }
	for i := 1; i < len(d.members); i++ {
		if byID(d.members[i-1], d.members[i]) >= 0 {
			return directory{}, errors.New("member directory: members out of order or listed twice")
		}
	}
	for i := 1; i < len(d.removed); i++ {
		if d.removed[i-1] >= d.removed[i] {
			return directory{}, errors.New("member directory: removed ids out of order or listed twice")
		}
	}
	return d, nil
}

func appendMembers(b []byte, ms []memberInfo) []byte {
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = binary.BigEndian.AppendUint64(b, m.ID)
		b = binary.AppendUvarint(b, uint64(len(m.Name)))
		b = append(b, m.Name...)
		b = binary.AppendUvarint(b, uint64(len(m.Addr)))
		b = append(b, m.Addr...)
		var flags byte
		if m.promote {
			flags |= flagPromote
		}
		b = append(b, flags)
	}
	return b
}

// readMembers reads a member list, checking each member: a valid name, a
// non-zero id and an address peers can dial. Problems stick in r.
func readMembers(r *reader) []memberInfo {
	n := r.uvarint(maxMembers)
	var ms []memberInfo
	for range n {
		var m memberInfo
		m.ID = r.uint64()
		m.Name = string(r.take(int(r.uvarint(maxNameLen))))
		m.Addr = string(r.take(int(r.uvarint(maxAddrLen))))
		flags := r.byte()
		if r.err != nil {
			return nil
		}
		m.promote = flags&flagPromote != 0
		switch {
		case flags&^flagPromote != 0:
			r.err = fmt.Errorf("member %q: unknown flags %#x", m.Name, flags)
		case CheckName(m.Name) != nil:
			r.err = CheckName(m.Name)
		case m.ID == 0:
			r.err = fmt.Errorf("member %q: id 0", m.Name)
		case CheckAddr(m.Addr) != nil:
			r.err = fmt.Errorf("member %q: %w", m.Name, CheckAddr(m.Addr))
		}
		if r.err != nil {
			return nil
		}
		ms = append(ms, m)
	}
	return ms
}

// bootstrap returns the hard state and log a founder persists before its
// first start: raft.Bootstrap's, with the founders' names and addresses in
// the first entry's context. The entry must be the same on every founder:
// the founders are sorted, and founding checked that all were given the same
// ones.
func bootstrap(founders []Member) (raftpb.HardState, []raftpb.Entry, error) {
	ms := make([]memberInfo, len(founders))
	ids := make([]uint64, len(founders))
	for i, m := range sortedMembers(founders) {
		ms[i], ids[i] = memberInfo{Member: m}, m.ID
	}
	hs, ents := raft.Bootstrap(ids)
	cc, err := raftpb.UnmarshalConfChange(ents[0].Data)
	if err != nil {
		return raftpb.HardState{}, nil, fmt.Errorf("bootstrap: %w", err)
	}
	cc.Context = changeContext{members: ms}.marshal()
	ents[0].Data = cc.Marshal()
	return hs, ents, nil
}
