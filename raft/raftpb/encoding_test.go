package raftpb

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func sampleMessages() []Message {
	return []Message{
		{Type: MsgHeartbeat, From: 1, To: 2, Term: 3, Commit: 9},
		{Type: MsgApp, From: 1, To: 3, Term: 5, LogTerm: 4, Index: 10, Commit: 9, Entries: []Entry{
			{Term: 5, Index: 11, Data: []byte("set a 1")},
			{Term: 5, Index: 12, Type: EntryConfChange, Data: []byte{0, 1, 2}},
			{Term: 5, Index: 13},
		}},
		{Type: MsgAppResp, From: 3, To: 1, Term: 5, Index: 10, Reject: true, RejectHint: 7, HintTerm: 2},
		{Type: MsgVote, From: 2, To: 1, Term: 6, LogTerm: 5, Index: 13, Context: []byte("transfer")},
		{Type: MsgSnap, From: 1, To: 2, Term: 6, Snapshot: &Snapshot{
			Metadata: SnapshotMetadata{Index: 100, Term: 6, ConfState: ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}},
			Data:     []byte("image"),
		}},
		{Type: MsgSnap, From: 1, To: 2, Term: 7, Snapshot: &Snapshot{
			Metadata: SnapshotMetadata{Index: 120, Term: 7, ConfState: ConfState{Voters: []uint64{1, 4}, VotersOutgoing: []uint64{1, 2, 3}, LearnersNext: []uint64{3}}},
		}},
		{Type: MsgReadIndexResp, From: 1, To: 2, Term: 6, Index: 40, Context: []byte{0xff, 0}},
		{Type: MsgTransferLeader, From: 3, To: 1, Index: 2},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b := m.MarshalAppend(nil)
		if len(b) > m.Size() {
			t.Errorf("%v: encoded %d bytes, Size() promised at most %d", m, len(b), m.Size())
		}
		got, err := UnmarshalMessage(b)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestMessageDecodeDoesNotAlias(t *testing.T) {
	m := Message{Type: MsgApp, From: 1, To: 2, Entries: []Entry{{Term: 1, Index: 1, Data: []byte("abc")}}}
	b := m.MarshalAppend(nil)
	got, err := UnmarshalMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if string(got.Entries[0].Data) != "abc" {
		t.Fatalf("decoded entry changed with the input buffer: %q", got.Entries[0].Data)
	}
}

func TestMessageDecodeRejects(t *testing.T) {
	good := sampleMessages()[1].MarshalAppend(nil)
	local := (&Message{Type: MsgUnreachable, From: 1, To: 2}).MarshalAppend(nil)
	cases := map[string][]byte{
		"empty":          nil,
		"bad version":    append([]byte{9}, good[1:]...),
		"unknown type":   {Version, 200, 0},
		"local type":     local,
		"truncated":      good[:len(good)-3],
		"trailing bytes": append(append([]byte{}, good...), 0),
		"huge count":     {Version, byte(MsgApp), 0, 1, 2, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := UnmarshalMessage(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestEntryAndStateRoundTrip(t *testing.T) {
	e := Entry{Term: 7, Index: 1 << 40, Type: EntryConfChange, Data: []byte("x")}
	if got, err := UnmarshalEntry(e.MarshalAppend(nil)); err != nil || !reflect.DeepEqual(got, e) {
		t.Errorf("entry: got %+v, %v; want %+v", got, err, e)
	}
	h := HardState{Term: 3, Vote: 2, Commit: 99}
	if got, err := UnmarshalHardState(h.MarshalAppend(nil)); err != nil || got != h {
		t.Errorf("hard state: got %+v, %v; want %+v", got, err, h)
	}
	md := SnapshotMetadata{Index: 5, Term: 2, ConfState: ConfState{Voters: []uint64{1, 2}}}
	if got, err := UnmarshalSnapshotMetadata(md.MarshalAppend(nil)); err != nil || !reflect.DeepEqual(got, md) {
		t.Errorf("snapshot metadata: got %+v, %v; want %+v", got, err, md)
	}
}

// FuzzUnmarshalMessage checks that any input either fails cleanly or
// decodes to a message that re-encodes to the same bytes.
func FuzzUnmarshalMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m.MarshalAppend(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := UnmarshalMessage(b)
		if err != nil {
			return
		}
		again, err := UnmarshalMessage(m.MarshalAppend(nil))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("unstable round trip: %+v vs %+v", again, m)
		}
	})
}

func FuzzUnmarshalEntry(f *testing.F) {
	f.Add((&Entry{Term: 1, Index: 2, Data: []byte("d")}).MarshalAppend(nil))
	f.Add(HardState{Term: 1}.MarshalAppend(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := UnmarshalEntry(b); err == nil {
			if _, err := UnmarshalEntry(e.MarshalAppend(nil)); err != nil {
				t.Fatalf("re-encoded entry does not decode: %v", err)
			}
		}
		_, _ = UnmarshalHardState(b)
		_, _ = UnmarshalSnapshotMetadata(b)
	})
}

func BenchmarkMessageMarshal(b *testing.B) {
	m := sampleMessages()[1]
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.MarshalAppend(buf[:0])
	}
}

func BenchmarkMessageUnmarshal(b *testing.B) {
	enc := sampleMessages()[1].MarshalAppend(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := UnmarshalMessage(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func sampleConfChanges() []ConfChange {
	return []ConfChange{
		{},
		{Changes: []ConfChangeSingle{{Type: ConfChangeAddLearner, NodeID: 4}}, Context: []byte("n4=127.0.0.1:7004")},
		{Changes: []ConfChangeSingle{
			{Type: ConfChangeAddVoter, NodeID: 4},
			{Type: ConfChangeRemove, NodeID: 1 << 60},
			{Type: ConfChangeAddLearner, NodeID: 2},
		}},
	}
}

func TestConfChangeRoundTrip(t *testing.T) {
	for _, cc := range sampleConfChanges() {
		got, err := UnmarshalConfChange(cc.Marshal())
		if err != nil {
			t.Fatalf("%v: %v", cc, err)
		}
		if !reflect.DeepEqual(got, cc) {
			t.Errorf("round trip: got %+v, want %+v", got, cc)
		}
	}
}

func TestConfChangeDecodeRejects(t *testing.T) {
	good := sampleConfChanges()[2].Marshal()
	cases := map[string][]byte{
		"empty":          nil,
		"bad version":    append([]byte{2}, good[1:]...),
		"unknown type":   {Version, 1, 9, 4, 0},
		"type zero":      {Version, 1, 0, 4, 0},
		"truncated":      good[:len(good)-2],
		"trailing bytes": append(append([]byte{}, good...), 0),
		"huge count":     {Version, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1, 0},
		"huge context":   {Version, 0, 0xff, 0xff, 0x03},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := UnmarshalConfChange(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestSnapshotMetadataJointRoundTrip(t *testing.T) {
	joint := ConfState{Voters: []uint64{1, 2, 4}, Learners: []uint64{5}, VotersOutgoing: []uint64{1, 2, 3}, LearnersNext: []uint64{3}}
	md := SnapshotMetadata{Index: 9, Term: 3, ConfState: joint}
	if got, err := UnmarshalSnapshotMetadata(md.MarshalAppend(nil)); err != nil || !reflect.DeepEqual(got, md) {
		t.Errorf("metadata: got %+v, %v; want %+v", got, err, md)
	}
	m := Message{Type: MsgSnap, From: 1, To: 4, Term: 3, Snapshot: &Snapshot{Metadata: md, Data: []byte("x")}}
	b := m.MarshalAppend(nil)
	if len(b) > m.Size() {
		t.Errorf("encoded %d bytes, Size() promised at most %d", len(b), m.Size())
	}
	if got, err := UnmarshalMessage(b); err != nil || !reflect.DeepEqual(got, m) {
		t.Errorf("message: got %+v, %v; want %+v", got, err, m)
	}
}

// TestSnapshotMetadataReadsVersion1 pins the format written before joint
// configurations existed: WAL records and snapshot files hold it.
func TestSnapshotMetadataReadsVersion1(t *testing.T) {
	// Version 1, index 300, term 7, voters (1 2 3), learners (4).
	v1 := []byte{1, 0xac, 0x02, 7, 3, 1, 2, 3, 1, 4}
	want := SnapshotMetadata{Index: 300, Term: 7, ConfState: ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}}
	got, err := UnmarshalSnapshotMetadata(v1)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	// A version-1 message with a snapshot (no joint flag) reads as before.
	msg := []byte{1, byte(MsgSnap), flagSnapshot, 1, 2, 7, 0, 0, 0, 0, 0, 0, 0xac, 0x02, 7, 3, 1, 2, 3, 1, 4, 1, 'd', 0}
	m, err := UnmarshalMessage(msg)
	if err != nil || m.Snapshot == nil || !reflect.DeepEqual(m.Snapshot.Metadata, want) || string(m.Snapshot.Data) != "d" {
		t.Fatalf("got %+v, %v; want a snapshot with %+v", m, err, want)
	}
	// Non-joint messages keep their version-1 bytes, so older peers read them.
	if again := m.MarshalAppend(nil); !reflect.DeepEqual(again, msg) {
		t.Errorf("re-encoded as %v, want %v", again, msg)
	}
}

func TestConfStrings(t *testing.T) {
	cases := []struct {
		got  fmt.Stringer
		want string
	}{
		{ConfState{Voters: []uint64{1, 2, 3}}, "voters=(1 2 3)"},
		{ConfState{Voters: []uint64{1, 4}, VotersOutgoing: []uint64{1, 2}, Learners: []uint64{5}, LearnersNext: []uint64{2}}, "voters=(1 4)&&(1 2) learners=(5) learners_next=(2)"},
		{ConfChange{}, "leave-joint"},
		{ConfChange{Changes: []ConfChangeSingle{{Type: ConfChangeAddVoter, NodeID: 4}, {Type: ConfChangeRemove, NodeID: 1}}}, "add-voter 4, remove 1"},
		{ConfChangeType(9), "ConfChangeType(9)"},
	}
	for _, c := range cases {
		if s := c.got.String(); s != c.want {
			t.Errorf("got %q, want %q", s, c.want)
		}
	}
}

// FuzzUnmarshalConfChange checks that any input either fails cleanly or
// decodes to a change that survives a round trip (varints may be written
// longer than needed, so the bytes themselves may differ).
func FuzzUnmarshalConfChange(f *testing.F) {
	for _, cc := range sampleConfChanges() {
		f.Add(cc.Marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cc, err := UnmarshalConfChange(b)
		if err != nil {
			return
		}
		again, err := UnmarshalConfChange(cc.Marshal())
		if err != nil {
			t.Fatalf("re-encoded change does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, cc) {
			t.Fatalf("unstable round trip: %+v vs %+v", again, cc)
		}
	})
}
