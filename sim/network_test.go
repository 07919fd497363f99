package sim

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }

// cuts lists the blocked directed links as [from, to] pairs.
func cuts(nw *Network) [][2]uint64 {
	var out [][2]uint64
	for from := uint64(1); from <= uint64(nw.n); from++ {
		for to := uint64(1); to <= uint64(nw.n); to++ {
			if nw.Blocked(from, to) {
				out = append(out, [2]uint64{from, to})
			}
		}
	}
	return out
}

func TestNetworkCutAndHeal(t *testing.T) {
	nw := NewNetwork(3, LinkFaults{})
	if nw.Partitioned() || nw.String() != "connected" {
		t.Fatalf("new network: got %v, want connected", nw)
	}
	nw.Cut(1, 2)
	nw.Cut(3, 3) // a node always reaches itself
	if got, want := cuts(nw), [][2]uint64{{1, 2}}; !slices.Equal(got, want) {
		t.Fatalf("cuts: got %v, want %v", got, want)
	}
	if nw.Blocked(2, 1) {
		t.Fatal("cutting 1->2 also cut 2->1")
	}
	if got, want := nw.String(), "1-x->2"; got != want {
		t.Fatalf("String: got %q, want %q", got, want)
	}
	nw.Heal()
	if nw.Partitioned() {
		t.Fatalf("after Heal: got %v, want connected", nw)
	}
}

// groupsOf recovers the two groups of a split partition: senders whose
// messages to someone are cut, and the receivers of those cuts.
func groupsOf(nw *Network) (senders, receivers map[uint64]bool) {
	senders, receivers = map[uint64]bool{}, map[uint64]bool{}
	for _, c := range cuts(nw) {
		senders[c[0]], receivers[c[1]] = true, true
	}
	return senders, receivers
}

func TestNetworkPartitionShapes(t *testing.T) {
	for _, n := range []int{2, 3, 5, 7} {
		for seed := range uint64(200) {
			rng := newRand(seed)
			nw := NewNetwork(n, LinkFaults{})

			nw.Partition(rng, Symmetric, 0)
			a, b := map[uint64]bool{}, map[uint64]bool{}
			for x := uint64(1); x <= uint64(n); x++ {
				if x == 1 || !nw.Blocked(1, x) {
					a[x] = true
				} else {
					b[x] = true
				}
			}
			checkSplit(t, nw, a, b)
			checkSplit(t, nw, b, a)

			nw.Partition(rng, Asymmetric, 0)
			s, r := groupsOf(nw)
			if len(s)+len(r) != n {
				t.Fatalf("n=%d seed=%d asymmetric: groups %v %v do not cover %d nodes", n, seed, s, r, n)
			}
			checkSplit(t, nw, s, r)
			for x := range r {
				for y := range s {
					if nw.Blocked(x, y) {
						t.Fatalf("n=%d seed=%d asymmetric: %d->%d cut in the open direction: %v", n, seed, x, y, nw)
					}
				}
			}

			before := len(cuts(nw))
			nw.Partition(rng, OneWay, 0)
			if after := len(cuts(nw)); after > before+1 || after < before {
				t.Fatalf("n=%d seed=%d one-way: cuts went from %d to %d, want at most one more", n, seed, before, after)
			}
			nw.Heal()
			nw.Partition(rng, OneWay, 0)
			if got := len(cuts(nw)); got != 1 {
				t.Fatalf("n=%d seed=%d one-way on a healed network: got %d cuts, want 1", n, seed, got)
			}
		}
	}
}

// checkSplit asserts that every link from group a to group b is cut, that
// both groups are non-empty, and that nodes inside each group still talk.
func checkSplit(t *testing.T, nw *Network, a, b map[uint64]bool) {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		t.Fatalf("split %v | %v has an empty side: %v", a, b, nw)
	}
	for x := range a {
		for y := range b {
			if !nw.Blocked(x, y) {
				t.Fatalf("%d->%d open across the split %v | %v: %v", x, y, a, b, nw)
			}
		}
		for y := range a {
			if nw.Blocked(x, y) {
				t.Fatalf("%d->%d cut inside group %v: %v", x, y, a, nw)
			}
		}
	}
}

func TestNetworkPartitionFocus(t *testing.T) {
	for _, n := range []int{2, 3, 5, 7} {
		for seed := range uint64(100) {
			rng := newRand(seed)
			nw := NewNetwork(n, LinkFaults{})
			focus := uint64(seed%uint64(n)) + 1
			for _, k := range []PartitionKind{Symmetric, Asymmetric} {
				nw.Partition(rng, k, focus)
				// The focus node's side is the one it shares open links with.
				side := 1
				for x := uint64(1); x <= uint64(n); x++ {
					if x != focus && !nw.Blocked(focus, x) && !nw.Blocked(x, focus) {
						side++
					}
				}
				if side > n/2 {
					t.Fatalf("n=%d seed=%d %v: focus %d is in a group of %d, want a minority: %v", n, seed, k, focus, side, nw)
				}
			}
			nw.Heal()
			nw.Partition(rng, OneWay, focus)
			c := cuts(nw)
			if len(c) != 1 || (c[0][0] != focus && c[0][1] != focus) {
				t.Fatalf("n=%d seed=%d one-way: cut %v does not touch focus %d", n, seed, c, focus)
			}
		}
	}
}

func TestNetworkPartitionSingleNode(t *testing.T) {
	nw := NewNetwork(1, LinkFaults{})
	for _, k := range []PartitionKind{Symmetric, Asymmetric, OneWay} {
		nw.Partition(newRand(1), k, 0)
		if nw.Partitioned() {
			t.Fatalf("%v on one node: got %v, want connected", k, nw)
		}
	}
}

func TestNetworkRoute(t *testing.T) {
	f := LinkFaults{DropRate: 0.3, DupRate: 0.2, LateRate: 0.1, MinDelay: 5, MaxDelay: 50}
	nw := NewNetwork(3, f)
	rng := newRand(7)
	const sends = 20000
	var lost, dups, late int
	var buf []int64
	for range sends {
		buf = nw.Route(rng, 1, 2, buf[:0])
		switch len(buf) {
		case 0:
			lost++
		case 2:
			dups++
		}
		for _, d := range buf {
			if d < f.MinDelay || d > 10*f.MaxDelay {
				t.Fatalf("delay %d outside [%d, %d]", d, f.MinDelay, 10*f.MaxDelay)
			}
			if d > f.MaxDelay {
				late++
			}
		}
	}
	// The generator is seeded, so these bounds cannot flake; they only
	// catch a rate wired to the wrong knob.
	within := func(what string, got int, rate float64, of int) {
		t.Helper()
		want := rate * float64(of)
		if float64(got) < 0.9*want || float64(got) > 1.1*want {
			t.Errorf("%s: got %d of %d, want about %.0f", what, got, of, want)
		}
	}
	within("lost", lost, f.DropRate, sends)
	within("duplicated", dups, f.DupRate, sends-lost)
	// A late draw lands above MaxDelay 90% of the time.
	within("late", late, f.LateRate*0.9, sends-lost+dups)

	lossless := NewNetwork(3, LinkFaults{MinDelay: 1, MaxDelay: 1})
	lossless.Cut(1, 2)
	if got := lossless.Route(rng, 1, 2, nil); len(got) != 0 {
		t.Fatalf("cut link delivered %v", got)
	}
	if got, want := lossless.Route(rng, 2, 1, nil), []int64{1}; !slices.Equal(got, want) {
		t.Fatalf("reverse of a one-way cut: got delays %v, want %v", got, want)
	}
}

func TestNetworkRouteReproducible(t *testing.T) {
	run := func() []int64 {
		nw := NewNetwork(5, LinkFaults{DropRate: 0.1, DupRate: 0.1, LateRate: 0.05, MinDelay: 1, MaxDelay: 30})
		rng := newRand(42)
		var out []int64
		for i := range 1000 {
			nw.Partition(rng, PartitionKind(i%3), uint64(i%6))
			out = nw.Route(rng, uint64(i%5+1), uint64((i+2)%5+1), out)
		}
		return out
	}
	if a, b := run(), run(); !slices.Equal(a, b) {
		t.Fatal("the same seed routed messages differently")
	}
}
