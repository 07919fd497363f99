package sim

import (
	"encoding/binary"
	"errors"
	"hash/fnv"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// StateMachine is what a simulated node applies committed entries to. The
// simulator itself checks which entries are applied where; a state machine
// only has to be deterministic, so that two snapshots taken at the same
// index are byte-for-byte equal (the checker compares them).
type StateMachine interface {
	// Apply applies one committed entry (leader no-op entries included).
	Apply(e raftpb.Entry) error
	// Snapshot encodes the state, for log compaction.
	Snapshot() ([]byte, error)
	// Restore replaces the state with a decoded snapshot.
	Restore(data []byte) error
}

// AppliedLog is the simplest StateMachine: it remembers the sequence of
// applied entries as a hash chain, which is all the simulator's checks
// need and keeps snapshots a few bytes long.
type AppliedLog struct {
	Index  uint64 // index of the last applied entry
	Digest uint64 // hash chain over every applied entry, in order
}

var _ StateMachine = (*AppliedLog)(nil)

// NewAppliedLog returns an empty AppliedLog; it suits Options.NewStateMachine.
func NewAppliedLog() StateMachine { return &AppliedLog{} }

// Apply extends the hash chain with e.
func (l *AppliedLog) Apply(e raftpb.Entry) error {
	h := fnv.New64a()
	var b [24]byte
	binary.BigEndian.PutUint64(b[0:], l.Digest)
	binary.BigEndian.PutUint64(b[8:], e.Index)
	binary.BigEndian.PutUint64(b[16:], e.Term)
	h.Write(b[:])
	h.Write([]byte{byte(e.Type)})
	h.Write(e.Data)
	l.Index, l.Digest = e.Index, h.Sum64()
	return nil
}

// Snapshot encodes the index and digest.
func (l *AppliedLog) Snapshot() ([]byte, error) {
	b := binary.BigEndian.AppendUint64(nil, l.Index)
	return binary.BigEndian.AppendUint64(b, l.Digest), nil
}

// Restore decodes what Snapshot encoded.
func (l *AppliedLog) Restore(data []byte) error {
	if len(data) != 16 {
		return errors.New("applied log: snapshot must be 16 bytes")
	}
	l.Index = binary.BigEndian.Uint64(data)
	l.Digest = binary.BigEndian.Uint64(data[8:])
	return nil
}
