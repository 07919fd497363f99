package node

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func TestChangeContextRoundTrip(t *testing.T) {
	for _, c := range []changeContext{
		{},
		{proposal: 42},
		{proposal: 7, members: []memberInfo{
			{Member: NewMember("n4", "10.0.0.4:7001"), promote: true},
			{Member: NewMember("[::1]:7000", "[::1]:7000")},
		}},
	} {
		got, err := unmarshalChangeContext(c.marshal())
		if err != nil || got.proposal != c.proposal || !slices.Equal(got.members, c.members) {
			t.Errorf("round trip of %+v: got %+v, %v", c, got, err)
		}
	}
	if c, err := unmarshalChangeContext(nil); err != nil || c.proposal != 0 || c.members != nil {
		t.Errorf("empty context: %+v, %v", c, err)
	}
	for _, bad := range [][]byte{
		{2},                                  // version
		{1, 0, 0},                            // cut short
		append(changeContext{}.marshal(), 0), // trailing
		changeContext{members: []memberInfo{{Member: Member{Name: "n1", ID: 0, Addr: "h:1"}}}}.marshal(), // id 0
		changeContext{members: []memberInfo{{Member: NewMember("n1", "nohost")}}}.marshal(),              // address
		changeContext{members: []memberInfo{{Member: NewMember("n 1", "h:1")}}}.marshal(),                // name
		append(binary.AppendUvarint([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0}, maxMembers+1), 0),                 // count
	} {
		if _, err := unmarshalChangeContext(bad); err == nil {
			t.Errorf("context %x was accepted", bad)
		}
	}
}

func TestDirectoryApply(t *testing.T) {
	n1, n2, n3 := NewMember("n1", "h:1"), NewMember("n2", "h:2"), NewMember("n3", "h:3")
	d := directory{}.apply(
		raftpb.ConfChange{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddVoter, NodeID: n1.ID}, {Type: raftpb.ConfChangeAddVoter, NodeID: n2.ID}}},
		[]memberInfo{{Member: n1}, {Member: n2}, {Member: n3}}, // n3 is named but not added: ignored
		raftpb.ConfState{Voters: []uint64{n1.ID, n2.ID}})
	if len(d.members) != 2 {
		t.Fatalf("directory after adding n1 and n2: %+v", d)
	}
	d = d.apply(raftpb.ConfChange{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearner, NodeID: n3.ID}}},
		[]memberInfo{{Member: n3, promote: true}}, raftpb.ConfState{Voters: []uint64{n1.ID, n2.ID}, Learners: []uint64{n3.ID}})
	if m, ok := d.get(n3.ID); !ok || !m.promote || m.Addr != "h:3" {
		t.Fatalf("n3 after joining: %+v", m)
	}
	d = d.apply(raftpb.ConfChange{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddVoter, NodeID: n3.ID}}},
		nil, raftpb.ConfState{Voters: []uint64{n1.ID, n2.ID, n3.ID}})
	if m, ok := d.get(n3.ID); !ok || m.promote || m.Addr != "h:3" {
		t.Fatalf("n3 after its promotion: %+v", m)
	}
	unknown := uint64(99)
	d = d.apply(raftpb.ConfChange{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemove, NodeID: n2.ID}, {Type: raftpb.ConfChangeAddLearner, NodeID: unknown}}},
		nil, raftpb.ConfState{Voters: []uint64{n1.ID, n3.ID}, Learners: []uint64{unknown}})
	if _, ok := d.get(n2.ID); ok || !d.wasRemoved(n2.ID) {
		t.Fatal("n2 is still in the directory after its removal, or not remembered as removed")
	}
	if m, ok := d.get(unknown); ok {
		t.Fatalf("a member added without a context is in the directory: %+v", m)
	}
	got, err := unmarshalDirectory(d.marshal())
	if err != nil || !slices.Equal(got.members, d.members) || !slices.Equal(got.removed, []uint64{n2.ID}) {
		t.Fatalf("directory round trip: %+v, %v; want %+v", got, err, d)
	}
	// A committed change that adds a removed id back is followed.
	d = d.apply(raftpb.ConfChange{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearner, NodeID: n2.ID}}},
		[]memberInfo{{Member: n2}}, raftpb.ConfState{Voters: []uint64{n1.ID, n3.ID}, Learners: []uint64{unknown, n2.ID}})
	if _, ok := d.get(n2.ID); !ok || d.wasRemoved(n2.ID) {
		t.Fatalf("n2 added back: %+v", d)
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	dir := t.TempDir()
	id := Identity{Name: "n2", ID: MemberID("n2"), Addr: "b:2", ClusterID: 9, Members: []Member{NewMember("n1", "a:1"), NewMember("n2", "b:2")},
		Founding: &Founding{Nonce: 5, Nonces: map[string]uint64{"n1": 4, "n2": 5}}}
	if err := saveIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	got, err := LoadIdentity(dir)
	if err != nil || got.Name != id.Name || got.ClusterID != 9 || got.Founding.Nonces["n1"] != 4 || len(got.Members) != 2 {
		t.Fatalf("loaded %+v, %v; want %+v", got, err, id)
	}
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		t.Fatal(err)
	}
	b[bytes.IndexByte(b, 'b')] = 'c' // n2's address, inside the checksummed part
	if _, err := decodeIdentity(b); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("a damaged identity: got %v, want a checksum error", err)
	}
}

func TestHelloRoundTrip(t *testing.T) {
	h := hello{hash: 1, nonce: 2, name: "n1"}
	if got, err := unmarshalHello(h.marshal()); err != nil || got != h {
		t.Fatalf("hello round trip: %+v, %v", got, err)
	}
	a := helloAnswer{founded: true, nonce: 3, clusterID: 4, nonces: map[string]uint64{"n1": 2, "n2": 3}}
	if got, err := unmarshalHelloAnswer(a.marshal()); err != nil || !got.founded || got.clusterID != 4 || got.nonces["n1"] != 2 {
		t.Fatalf("answer round trip: %+v, %v", got, err)
	}
	if _, err := unmarshalHelloAnswer(helloAnswer{founded: true, nonce: 3}.marshal()); err == nil {
		t.Fatal("a founded answer without founders was accepted")
	}
}

func FuzzUnmarshalChangeContext(f *testing.F) {
	f.Add([]byte{})
	f.Add(changeContext{proposal: 7, members: []memberInfo{{Member: NewMember("n4", "10.0.0.4:7001"), promote: true}}}.marshal())
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := unmarshalChangeContext(b)
		if err != nil {
			return
		}
		for _, m := range c.members {
			if CheckName(m.Name) != nil || CheckAddr(m.Addr) != nil || m.ID == 0 {
				t.Fatalf("decoded an invalid member %+v", m)
			}
		}
		if again, err := unmarshalChangeContext(c.marshal()); err != nil || !slices.Equal(again.members, c.members) {
			t.Fatalf("re-encoding %+v: %+v, %v", c, again, err)
		}
	})
}

func FuzzUnmarshalDirectory(f *testing.F) {
	f.Add(directory{members: []memberInfo{{Member: NewMember("n1", "127.0.0.1:7001")}, {Member: NewMember("n2", "127.0.0.1:7002"), promote: true}}, removed: []uint64{3, 9}}.marshal())
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 0, 0xff, 0xff, 0x3f})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := unmarshalDirectory(b)
		if err != nil {
			return
		}
		for i := 1; i < len(d.members); i++ {
			if d.members[i].ID <= d.members[i-1].ID {
				t.Fatalf("decoded directory out of order: %+v", d)
			}
		}
		if again, err := unmarshalDirectory(d.marshal()); err != nil || !slices.Equal(again.removed, d.removed) {
			t.Fatalf("re-encoding %+v: %+v, %v", d, again, err)
		}
	})
}

func FuzzQueries(f *testing.F) {
	f.Add(hello{hash: 1, nonce: 2, name: "n1"}.marshal())
	f.Add(helloAnswer{founded: true, nonce: 3, clusterID: 4, nonces: map[string]uint64{"n1": 2}}.marshal())
	f.Add(clientURLRequest(5))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := unmarshalHello(b); err == nil && !bytes.Equal(h.marshal(), b) {
			t.Fatalf("hello %+v re-encodes differently", h)
		}
		if a, err := unmarshalHelloAnswer(b); err == nil && a.founded && a.clusterID == 0 {
			t.Fatalf("accepted a founded answer without a cluster id: %+v", a)
		}
	})
}

func FuzzDecodeIdentity(f *testing.F) {
	good, err := encodeIdentity(Identity{Name: "n1", ID: MemberID("n1"), Addr: "127.0.0.1:7001", ClusterID: 3, Members: []Member{NewMember("n1", "127.0.0.1:7001")}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"identity":{},"crc32c":0}`))
	f.Add([]byte(`{"identity":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := decodeIdentity(b)
		if err != nil {
			return
		}
		if err := id.check(); err != nil {
			t.Fatalf("decoded an invalid identity %+v: %v", id, err)
		}
	})
}
