package quorum

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"
)

// naiveCommitted is the definition itself: the largest index that at least
// a majority of voters has acknowledged.
func naiveCommitted(ids []uint64, acked map[uint64]uint64) uint64 {
	if len(ids) == 0 {
		return math.MaxUint64
	}
	var best uint64
	for _, id := range ids {
		cand := acked[id]
		n := 0
		for _, o := range ids {
			if acked[o] >= cand {
				n++
			}
		}
		if n > len(ids)/2 && cand > best {
			best = cand
		}
	}
	return best
}

func naiveVote(ids []uint64, votes map[uint64]bool) VoteResult {
	if len(ids) == 0 {
		return VoteWon
	}
	yes, no := 0, 0
	for _, id := range ids {
		if v, ok := votes[id]; ok {
			if v {
				yes++
			} else {
				no++
			}
		}
	}
	switch {
	case 2*yes > len(ids):
		return VoteWon
	case 2*no >= len(ids):
		// The rest cannot form a majority any more.
		return VoteLost
	}
	return VotePending
}

// randomConfig draws up to 9 distinct ids from 1..12 and acks/votes for a
// random subset of ids (some outside the configuration).
func randomConfig(r *rand.Rand) ([]uint64, MapAckIndexer, map[uint64]bool) {
	n := r.IntN(10)
	perm := r.Perm(12)
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(perm[i] + 1)
	}
	acked := MapAckIndexer{}
	votes := map[uint64]bool{}
	for id := uint64(1); id <= 12; id++ {
		if r.IntN(4) > 0 {
			acked[id] = uint64(r.IntN(8))
		}
		if r.IntN(3) > 0 {
			votes[id] = r.IntN(2) == 0
		}
	}
	return ids, acked, votes
}

func TestMajorityMatchesNaive(t *testing.T) {
	f := func(seed uint64) bool {
		r := rand.New(rand.NewPCG(seed, 1))
		ids, acked, votes := randomConfig(r)
		c := NewMajorityConfig(ids...)
		if got, want := c.CommittedIndex(acked), naiveCommitted(ids, acked); got != want {
			t.Logf("ids %v acked %v: CommittedIndex %d, want %d", ids, acked, got, want)
			return false
		}
		if got, want := c.VoteResult(votes), naiveVote(ids, votes); got != want {
			t.Logf("ids %v votes %v: VoteResult %v, want %v", ids, votes, got, want)
			return false
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

func TestJointIsBothHalves(t *testing.T) {
	f := func(seed uint64) bool {
		r := rand.New(rand.NewPCG(seed, 2))
		in, acked, votes := randomConfig(r)
		out, _, _ := randomConfig(r)
		j := JointConfig{Incoming: NewMajorityConfig(in...), Outgoing: NewMajorityConfig(out...)}
		if got, want := j.CommittedIndex(acked), min(naiveCommitted(in, acked), naiveCommitted(out, acked)); got != want {
			t.Logf("in %v out %v acked %v: CommittedIndex %d, want %d", in, out, acked, got, want)
			return false
		}
		r1, r2 := naiveVote(in, votes), naiveVote(out, votes)
		want := VotePending
		switch {
		case r1 == VoteWon && r2 == VoteWon:
			want = VoteWon
		case r1 == VoteLost || r2 == VoteLost:
			want = VoteLost
		}
		if got := j.VoteResult(votes); got != want {
			t.Logf("in %v out %v votes %v: VoteResult %v, want %v", in, out, votes, got, want)
			return false
		}
		// A joint config whose halves agree is the same as one half.
		same := JointConfig{Incoming: NewMajorityConfig(in...), Outgoing: NewMajorityConfig(in...)}
		return same.CommittedIndex(acked) == NewMajorityConfig(in...).CommittedIndex(acked)
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
}

func TestCommittedIndexExamples(t *testing.T) {
	for _, tc := range []struct {
		ids   []uint64
		acked MapAckIndexer
		want  uint64
	}{
		{[]uint64{1}, MapAckIndexer{1: 5}, 5},
		{[]uint64{1, 2, 3}, MapAckIndexer{1: 5, 2: 3, 3: 1}, 3},
		{[]uint64{1, 2, 3}, MapAckIndexer{1: 5}, 0}, // missing acks count as 0
		{[]uint64{1, 2, 3, 4}, MapAckIndexer{1: 5, 2: 5, 3: 4, 4: 1}, 4},
		{[]uint64{1, 2, 3, 4, 5}, MapAckIndexer{1: 9, 2: 8, 3: 7, 4: 2, 5: 1}, 7},
		{[]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9}, MapAckIndexer{1: 9, 2: 8, 3: 7, 4: 6, 5: 5, 6: 4, 7: 3, 8: 2, 9: 1}, 5},
	} {
		if got := NewMajorityConfig(tc.ids...).CommittedIndex(tc.acked); got != tc.want {
			t.Errorf("ids %v acked %v: got %d, want %d", tc.ids, tc.acked, got, tc.want)
		}
	}
}

func TestIDsSortedAndDeduplicated(t *testing.T) {
	j := JointConfig{Incoming: NewMajorityConfig(3, 1, 2), Outgoing: NewMajorityConfig(2, 4)}
	if got, want := j.IDs(), []uint64{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("IDs() = %v, want %v", got, want)
	}
	if !j.Contains(4) || j.Contains(5) {
		t.Fatalf("Contains is wrong for %v", j)
	}
}

func BenchmarkCommittedIndex3(b *testing.B) {
	c := NewMajorityConfig(1, 2, 3)
	acked := MapAckIndexer{1: 10, 2: 9, 3: 8}
	b.ReportAllocs()
	for b.Loop() {
		c.CommittedIndex(acked)
	}
}
