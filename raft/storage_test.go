package raft

import (
	"errors"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func termsOf(ents []raftpb.Entry) []uint64 {
	var ts []uint64
	for _, e := range ents {
		ts = append(ts, e.Term)
	}
	return ts
}

func TestMemoryStorage(t *testing.T) {
	st := NewMemoryStorage()
	if err := st.Append(entries(1, 1, 2, 2, 3)); err != nil {
		t.Fatal(err)
	}
	// A conflicting suffix is replaced.
	if err := st.Append([]raftpb.Entry{{Index: 4, Term: 4}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Entries(1, 5, 1<<20); !slices.Equal(termsOf(got), []uint64{1, 1, 2, 4}) {
		t.Fatalf("after overwrite: %v", termsOf(got))
	}
	// A gap is refused.
	if err := st.Append([]raftpb.Entry{{Index: 9, Term: 4}}); err == nil {
		t.Fatal("appended across a gap")
	}
	// Size limits keep at least one entry.
	if got, _ := st.Entries(1, 5, 0); len(got) != 1 {
		t.Fatalf("maxSize 0 returned %d entries, want 1", len(got))
	}
	if got, _ := st.Entries(1, 5, 2*24); len(got) != 2 {
		t.Fatalf("maxSize of two entries returned %d", len(got))
	}
	// Appending to a slice handed out must not write into storage.
	got, _ := st.Entries(1, 3, 1<<20)
	_ = append(got, raftpb.Entry{Index: 3, Term: 99})
	if tm, _ := st.Term(3); tm != 2 {
		t.Fatalf("caller's append changed storage: term(3) = %d", tm)
	}

	snap, err := st.CreateSnapshot(3, &raftpb.ConfState{Voters: []uint64{1, 2, 3}}, []byte("s"))
	if err != nil || snap.Metadata.Index != 3 || snap.Metadata.Term != 2 {
		t.Fatalf("CreateSnapshot = %+v, %v", snap.Metadata, err)
	}
	if _, err := st.CreateSnapshot(2, nil, nil); !errors.Is(err, ErrSnapOutOfDate) {
		t.Fatalf("older snapshot: %v", err)
	}
	if err := st.Compact(3); err != nil {
		t.Fatal(err)
	}
	if err := st.Compact(2); !errors.Is(err, ErrCompacted) {
		t.Fatalf("compact below first: %v", err)
	}
	if _, err := st.Entries(2, 4, 1<<20); !errors.Is(err, ErrCompacted) {
		t.Fatalf("read compacted: %v", err)
	}
	if _, err := st.Entries(4, 9, 1<<20); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("read past end: %v", err)
	}
	if tm, err := st.Term(3); err != nil || tm != 2 {
		t.Fatalf("term of the snapshot index = %d, %v; want 2", tm, err)
	}
	if first, _ := st.FirstIndex(); first != 4 {
		t.Fatalf("first index %d, want 4", first)
	}
	if _, cs, _ := st.InitialState(); !cs.Equal(raftpb.ConfState{Voters: []uint64{1, 2, 3}}) {
		t.Fatalf("conf state %+v", cs)
	}
	// Entries older than the snapshot are skipped on append.
	if err := st.Append(entries(1, 1, 2, 4, 5)); err != nil {
		t.Fatal(err)
	}
	if last, _ := st.LastIndex(); last != 5 {
		t.Fatalf("last index %d, want 5", last)
	}
	if err := st.ApplySnapshot(raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 10, Term: 6}}); err != nil {
		t.Fatal(err)
	}
	if first, _ := st.FirstIndex(); first != 11 {
		t.Fatalf("after ApplySnapshot first index %d, want 11", first)
	}
	if err := st.ApplySnapshot(raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 10, Term: 6}}); !errors.Is(err, ErrSnapOutOfDate) {
		t.Fatalf("same snapshot twice: %v", err)
	}
}

func TestUnstableTruncateAndStable(t *testing.T) {
	for _, tc := range []struct {
		name       string
		app        []raftpb.Entry
		wantOffset uint64
		wantTerms  []uint64
		wantInProg uint64
	}{
		{"append after", []raftpb.Entry{{Index: 8, Term: 2}}, 5, []uint64{1, 1, 1, 2}, 7},
		{"replace all", []raftpb.Entry{{Index: 5, Term: 2}}, 5, []uint64{2}, 5},
		{"replace below offset", []raftpb.Entry{{Index: 3, Term: 2}}, 3, []uint64{2}, 3},
		{"truncate in middle", []raftpb.Entry{{Index: 6, Term: 2}}, 5, []uint64{1, 2}, 6},
		{"truncate above in-progress", []raftpb.Entry{{Index: 7, Term: 2}}, 5, []uint64{1, 1, 2}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := unstable{offset: 5, inProgress: 7, entries: []raftpb.Entry{{Index: 5, Term: 1}, {Index: 6, Term: 1}, {Index: 7, Term: 1}}}
			u.truncateAndAppend(tc.app)
			if u.offset != tc.wantOffset || !slices.Equal(termsOf(u.entries), tc.wantTerms) || u.inProgress != tc.wantInProg {
				t.Fatalf("got offset %d terms %v inProgress %d, want %d %v %d", u.offset, termsOf(u.entries), u.inProgress, tc.wantOffset, tc.wantTerms, tc.wantInProg)
			}
		})
	}
	u := unstable{offset: 5, inProgress: 8, entries: []raftpb.Entry{{Index: 5, Term: 1}, {Index: 6, Term: 1}, {Index: 7, Term: 2}}}
	u.stableTo(6, 2) // wrong term: overwritten since handed out
	if u.offset != 5 {
		t.Fatalf("stableTo with a stale term moved offset to %d", u.offset)
	}
	u.stableTo(6, 1)
	if u.offset != 7 || len(u.entries) != 1 {
		t.Fatalf("stableTo(6): offset %d, %d entries; want 7 and 1", u.offset, len(u.entries))
	}
}

func TestInflights(t *testing.T) {
	in := newInflights(3, 250)
	in.add(1, 100)
	in.add(2, 100)
	if in.full() {
		t.Fatal("full at 2 of 3 and 200 of 250 bytes")
	}
	in.add(3, 100)
	if !in.full() {
		t.Fatal("not full at 3 of 3")
	}
	in.freeLE(2)
	if in.count != 1 || in.bytes != 100 || in.full() {
		t.Fatalf("after freeLE(2): count %d bytes %d", in.count, in.bytes)
	}
	for i := uint64(4); i < 10; i++ { // wrap around the ring
		if !in.full() {
			in.add(i, 10)
		}
		in.freeFirst()
	}
	if in.count != 1 || in.bytes != 10 {
		t.Fatalf("ring holds count %d bytes %d, want the last append only", in.count, in.bytes)
	}
	in.freeLE(100)
	if in.count != 0 || in.bytes != 0 {
		t.Fatalf("drained ring has count %d bytes %d", in.count, in.bytes)
	}
	in.add(10, 300) // one huge append fills by bytes
	if !in.full() {
		t.Fatal("not full by bytes")
	}
}

func TestProgressBacktracking(t *testing.T) {
	for _, tc := range []struct {
		name           string
		state          ProgressState
		match, next    uint64
		rejected, hint uint64
		wantOK         bool
		wantNext       uint64
	}{
		{"replicate stale", StateReplicate, 5, 10, 5, 5, false, 10},
		{"replicate rewinds to match", StateReplicate, 5, 10, 8, 2, true, 6},
		{"probe stale", StateProbe, 0, 10, 5, 3, false, 10},
		{"probe jumps by hint", StateProbe, 0, 10, 9, 3, true, 4},
		{"probe never below match", StateProbe, 5, 10, 9, 2, true, 6},
		{"probe hint past rejected", StateProbe, 0, 10, 9, 20, true, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := &progress{state: tc.state, match: tc.match, next: tc.next, inflights: newInflights(4, 0)}
			if ok := pr.maybeDecrTo(tc.rejected, tc.hint); ok != tc.wantOK || pr.next != tc.wantNext {
				t.Fatalf("got %v next %d, want %v next %d", ok, pr.next, tc.wantOK, tc.wantNext)
			}
		})
	}
}
