package raftpb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The encoding is hand-written rather than reflective so that the hot path
// (entries and messages) allocates only for payloads. Integers are unsigned
// varints, byte strings are a varint length followed by the bytes. Every
// top-level value starts with a format version byte so the format can grow.
//
// Decoders treat their input as hostile: every length is checked against
// the bytes that remain before anything is allocated, and errors say what
// was being decoded.

// Version is the encoding version written by the Marshal functions of
// entries, hard states, messages and conf changes. Snapshot metadata is at
// version 2 (see versionJointConf); messages grew through a flag instead,
// so that peers still on version 1 read every message but a snapshot of a
// joint configuration.
const Version byte = 1

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("raftpb: corrupt encoding")

// decoder reads from a byte slice, remembering the first error.
type decoder struct {
	buf  []byte
	off  int
	what string
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: decode %s at byte %d: %s", ErrCorrupt, d.what, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.buf) {
		d.fail("unexpected end")
		return 0
	}
	b := d.buf[d.off]
	d.off++
	return b
}

// bytes returns a copy of a length-prefixed byte string, or nil when empty.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)-d.off) {
		d.fail("length %d exceeds the %d bytes left", n, len(d.buf)-d.off)
		return nil
	}
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	copy(b, d.buf[d.off:])
	d.off += int(n)
	return b
}

// count reads a collection length and checks it against the bytes left,
// given that each element needs at least minSize bytes.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64((len(d.buf)-d.off)/minSize) {
		d.fail("count %d cannot fit in the %d bytes left", n, len(d.buf)-d.off)
		return 0
	}
	return int(n)
}

func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v != Version {
		d.fail("unsupported version %d", v)
	}
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d trailing bytes", len(d.buf)-d.off)
	}
	return d.err
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendIDs(b []byte, ids []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, id)
	}
	return b
}

func (d *decoder) ids() []uint64 {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = d.uvarint()
	}
	return ids
}

// entry body: term, index, type, data.
func appendEntry(b []byte, e *Entry) []byte {
	b = binary.AppendUvarint(b, e.Term)
	b = binary.AppendUvarint(b, e.Index)
	b = append(b, byte(e.Type))
	return appendBytes(b, e.Data)
}

const minEntrySize = 4 // term, index, type, data length: one byte each at least

func (d *decoder) entry() Entry {
	var e Entry
	e.Term = d.uvarint()
	e.Index = d.uvarint()
	e.Type = EntryType(d.byte())
	if d.err == nil && e.Type > EntryConfChange {
		d.fail("unknown entry type %d", e.Type)
	}
	e.Data = d.bytes()
	return e
}

// MarshalAppend appends the encoding of e to b.
func (e *Entry) MarshalAppend(b []byte) []byte {
	return appendEntry(append(b, Version), e)
}

// UnmarshalEntry decodes an entry written by Entry.MarshalAppend. The
// result does not alias b.
func UnmarshalEntry(b []byte) (Entry, error) {
	d := decoder{buf: b, what: "entry"}
	d.version()
	e := d.entry()
	return e, d.finish()
}

// MarshalAppend appends the encoding of h to b.
func (h HardState) MarshalAppend(b []byte) []byte {
	b = append(b, Version)
	b = binary.AppendUvarint(b, h.Term)
	b = binary.AppendUvarint(b, h.Vote)
	return binary.AppendUvarint(b, h.Commit)
}

// UnmarshalHardState decodes a hard state written by HardState.MarshalAppend.
func UnmarshalHardState(b []byte) (HardState, error) {
	d := decoder{buf: b, what: "hard state"}
	d.version()
	h := HardState{Term: d.uvarint(), Vote: d.uvarint(), Commit: d.uvarint()}
	return h, d.finish()
}

// versionJointConf is the version of SnapshotMetadata encodings that carry
// the joint halves of the ConfState (VotersOutgoing, LearnersNext) after
// Learners. Version-1 metadata, written before joint configurations
// existed, is still read: it has no joint halves.
const versionJointConf byte = 2

// confState body: voters, learners and, when joint, the outgoing voters and
// the learners next.
func appendConfState(b []byte, cs *ConfState, joint bool) []byte {
	b = appendIDs(b, cs.Voters)
	b = appendIDs(b, cs.Learners)
	if joint {
		b = appendIDs(b, cs.VotersOutgoing)
		b = appendIDs(b, cs.LearnersNext)
	}
	return b
}

func (d *decoder) confState(joint bool) ConfState {
	var cs ConfState
	cs.Voters = d.ids()
	cs.Learners = d.ids()
	if joint {
		cs.VotersOutgoing = d.ids()
		cs.LearnersNext = d.ids()
	}
	return cs
}

// hasJointHalves reports whether cs needs the joint encoding.
func hasJointHalves(cs *ConfState) bool {
	return len(cs.VotersOutgoing) > 0 || len(cs.LearnersNext) > 0
}

func appendSnapshotMetadata(b []byte, m *SnapshotMetadata, joint bool) []byte {
	b = binary.AppendUvarint(b, m.Index)
	b = binary.AppendUvarint(b, m.Term)
	return appendConfState(b, &m.ConfState, joint)
}

func (d *decoder) snapshotMetadata(joint bool) SnapshotMetadata {
	var m SnapshotMetadata
	m.Index = d.uvarint()
	m.Term = d.uvarint()
	m.ConfState = d.confState(joint)
	return m
}

// MarshalAppend appends the encoding of m to b. It always writes the
// version that carries the joint halves of the ConfState.
func (m *SnapshotMetadata) MarshalAppend(b []byte) []byte {
	return appendSnapshotMetadata(append(b, versionJointConf), m, true)
}

// UnmarshalSnapshotMetadata decodes metadata written by
// SnapshotMetadata.MarshalAppend, in the current format or in version 1
// (before joint configurations).
func UnmarshalSnapshotMetadata(b []byte) (SnapshotMetadata, error) {
	d := decoder{buf: b, what: "snapshot metadata"}
	v := d.byte()
	if d.err == nil && v != Version && v != versionJointConf {
		d.fail("unsupported version %d", v)
	}
	m := d.snapshotMetadata(v == versionJointConf)
	return m, d.finish()
}

// minConfChangeSize is the smallest encoding of one ConfChangeSingle: a
// type byte and a one-byte node id.
const minConfChangeSize = 2

// Marshal returns the encoding of cc, the Data of an EntryConfChange entry.
func (cc *ConfChange) Marshal() []byte {
	b := make([]byte, 0, 2+len(cc.Changes)*(1+binary.MaxVarintLen64)+binary.MaxVarintLen64+len(cc.Context))
	b = append(b, Version)
	b = binary.AppendUvarint(b, uint64(len(cc.Changes)))
	for _, ch := range cc.Changes {
		b = append(b, byte(ch.Type))
		b = binary.AppendUvarint(b, ch.NodeID)
	}
	return appendBytes(b, cc.Context)
}

// UnmarshalConfChange decodes a change written by ConfChange.Marshal. It
// rejects unknown change types but not changes that make no sense for a
// configuration (node id 0, duplicates): that is for the core to judge
// against the configuration it applies to. The result does not alias b.
func UnmarshalConfChange(b []byte) (ConfChange, error) {
	d := decoder{buf: b, what: "conf change"}
	d.version()
	var cc ConfChange
	if n := d.count(minConfChangeSize); n > 0 {
		cc.Changes = make([]ConfChangeSingle, n)
		for i := range cc.Changes {
			t := ConfChangeType(d.byte())
			if d.err == nil && !t.Valid() {
				d.fail("unknown conf change type %d", t)
			}
			cc.Changes[i] = ConfChangeSingle{Type: t, NodeID: d.uvarint()}
		}
	}
	cc.Context = d.bytes()
	if err := d.finish(); err != nil {
		return ConfChange{}, err
	}
	return cc, nil
}

// Message flag bits.
const (
	flagReject   = 1 << 0
	flagSnapshot = 1 << 1
	// flagJointConf: the snapshot's ConfState carries its joint halves.
	// Set only when they are not empty, so that a message without them
	// reads as before.
	flagJointConf = 1 << 2
)

// MarshalAppend appends the encoding of m to b.
func (m *Message) MarshalAppend(b []byte) []byte {
	b = append(b, Version, byte(m.Type))
	var flags byte
	if m.Reject {
		flags |= flagReject
	}
	joint := m.Snapshot != nil && hasJointHalves(&m.Snapshot.Metadata.ConfState)
	if m.Snapshot != nil {
		flags |= flagSnapshot
	}
	if joint {
		flags |= flagJointConf
	}
	b = append(b, flags)
	for _, v := range [...]uint64{m.From, m.To, m.Term, m.LogTerm, m.Index, m.Commit, m.RejectHint, m.HintTerm} {
		b = binary.AppendUvarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for i := range m.Entries {
		b = appendEntry(b, &m.Entries[i])
	}
	if m.Snapshot != nil {
		b = appendSnapshotMetadata(b, &m.Snapshot.Metadata, joint)
		b = appendBytes(b, m.Snapshot.Data)
	}
	return appendBytes(b, m.Context)
}

// Size returns the length of m's encoding.
func (m *Message) Size() int {
	// Encoding into a scratch buffer would allocate; the bound below is
	// exact enough for flow control and frame sizing.
	n := 3 + 8*binary.MaxVarintLen64 + binary.MaxVarintLen64 + len(m.Context) + binary.MaxVarintLen64
	for i := range m.Entries {
		n += 2*binary.MaxVarintLen64 + 1 + binary.MaxVarintLen64 + len(m.Entries[i].Data)
	}
	if m.Snapshot != nil {
		cs := &m.Snapshot.Metadata.ConfState
		ids := len(cs.Voters) + len(cs.Learners) + len(cs.VotersOutgoing) + len(cs.LearnersNext)
		n += 6*binary.MaxVarintLen64 + binary.MaxVarintLen64*ids
		n += binary.MaxVarintLen64 + len(m.Snapshot.Data)
	}
	return n
}

// UnmarshalMessage decodes a message written by Message.MarshalAppend. It
// rejects unknown and local-only message types. The result does not alias b.
func UnmarshalMessage(b []byte) (Message, error) {
	d := decoder{buf: b, what: "message"}
	d.version()
	var m Message
	m.Type = MessageType(d.byte())
	if d.err == nil && (!m.Type.Valid() || m.Type.IsLocal()) {
		d.fail("message type %d is not accepted from a peer", m.Type)
	}
	flags := d.byte()
	if d.err == nil && flags&^(flagReject|flagSnapshot|flagJointConf) != 0 {
		d.fail("unknown flags %#x", flags)
	}
	if d.err == nil && flags&flagJointConf != 0 && flags&flagSnapshot == 0 {
		d.fail("joint configuration flag without a snapshot")
	}
	m.Reject = flags&flagReject != 0
	m.From = d.uvarint()
	m.To = d.uvarint()
	m.Term = d.uvarint()
	m.LogTerm = d.uvarint()
	m.Index = d.uvarint()
	m.Commit = d.uvarint()
	m.RejectHint = d.uvarint()
	m.HintTerm = d.uvarint()
	if n := d.count(minEntrySize); n > 0 {
		m.Entries = make([]Entry, n)
		for i := range m.Entries {
			m.Entries[i] = d.entry()
		}
	}
	if flags&flagSnapshot != 0 {
		m.Snapshot = &Snapshot{Metadata: d.snapshotMetadata(flags&flagJointConf != 0)}
		m.Snapshot.Data = d.bytes()
	}
	m.Context = d.bytes()
	if err := d.finish(); err != nil {
		return Message{}, err
	}
	return m, nil
}
