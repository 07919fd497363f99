package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// LinkFaults describe what an unpartitioned link does to each message.
// Delays are in simulated time units (a tick is TickInterval units); messages
// overtake each other whenever their random delays cross, so reordering needs
// no separate knob.
type LinkFaults struct {
	DropRate float64 // probability that a message is lost
	DupRate  float64 // probability that a delivered message arrives twice
	LateRate float64 // probability of a delay up to 10*MaxDelay (a stale message)
	MinDelay int64   // shortest delivery delay
	MaxDelay int64   // longest ordinary delivery delay
}

// PartitionKind is a shape of network partition.
type PartitionKind uint8

const (
	// Symmetric splits the nodes into two groups that cannot talk either way.
	Symmetric PartitionKind = iota
	// Asymmetric splits the nodes into two groups where the first can send
	// to the second but hears nothing back (a leader whose heartbeats go out
	// but whose acknowledgements never arrive, for example).
	Asymmetric
	// OneWay cuts a single directed link, on top of whatever else is cut.
	OneWay
)

func (k PartitionKind) String() string {
	switch k {
	case Symmetric:
		return "symmetric"
	case Asymmetric:
		return "asymmetric"
	case OneWay:
		return "one-way"
	}
	return fmt.Sprintf("PartitionKind(%d)", uint8(k))
}

// Network is the simulated network's policy: which directed links are cut
// and the fate of every message. It holds no messages itself; the scheduler
// turns each fate into delivery events. Node ids are 1..n.
type Network struct {
	n   int
	cut []bool // cut[(from-1)*n+(to-1)]: messages from -> to are lost
	// present are the nodes partitions are drawn among (nil: all): nodes
	// that have not joined yet, or have left for good, are left out so
	// that a partition splits the running cluster.
	present []uint64
	Faults  LinkFaults
}

// NewNetwork returns a fully connected network of n nodes.
func NewNetwork(n int, f LinkFaults) *Network {
	return &Network{n: n, cut: make([]bool, n*n), Faults: f}
}

func (nw *Network) link(from, to uint64) int { return int(from-1)*nw.n + int(to-1) }

// Blocked reports whether messages from -> to are currently lost. A node can
// always reach itself.
func (nw *Network) Blocked(from, to uint64) bool {
	return from != to && nw.cut[nw.link(from, to)]
}

// Cut blocks the directed link from -> to.
func (nw *Network) Cut(from, to uint64) {
	if from != to {
		nw.cut[nw.link(from, to)] = true
	}
}

// SetPresent limits the partitions drawn from now on to the given nodes
// (nil: all); links to the others keep their state.
func (nw *Network) SetPresent(ids []uint64) { nw.present = slices.Clone(ids) }

// nodes returns the nodes partitions are drawn among.
func (nw *Network) nodes() []uint64 {
	if nw.present != nil {
		return slices.Clone(nw.present)
	}
	ids := make([]uint64, nw.n)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	return ids
}

// Heal reconnects every link.
func (nw *Network) Heal() { clear(nw.cut) }

// Partitioned reports whether any link is cut.
func (nw *Network) Partitioned() bool {
	for _, c := range nw.cut {
		if c {
			return true
		}
	}
	return false
}

// Partition applies a random partition of the given kind and describes it.
// Symmetric and Asymmetric replace any earlier partition; OneWay adds to it.
// If focus is not 0, that node ends up in the minority (for OneWay: at one
// end of the cut link), which is how a leader gets cut off. With a single
// node there is nothing to cut.
func (nw *Network) Partition(rng *rand.Rand, kind PartitionKind, focus uint64) string {
	ids := nw.nodes()
	if len(ids) < 2 {
		return "no partition possible with one node"
	}
	if !slices.Contains(ids, focus) {
		focus = 0
	}
	if kind == OneWay {
		i := rng.IntN(len(ids))
		j := rng.IntN(len(ids) - 1)
		if j >= i {
			j++
		}
		from, to := ids[i], ids[j]
		if focus != 0 && focus != from && focus != to {
			from = focus
		}
		if rng.IntN(2) == 0 && focus != 0 {
			from, to = to, from
		}
		nw.Cut(from, to)
		return fmt.Sprintf("one-way cut %d->%d", from, to)
	}
	nw.Heal()
	a, b := split(rng, ids, focus)
	if kind == Asymmetric && rng.IntN(2) == 0 {
		a, b = b, a
	}
	for _, x := range a {
		for _, y := range b {
			nw.Cut(x, y)
			if kind == Symmetric {
				nw.Cut(y, x)
			}
		}
	}
	if kind == Symmetric {
		return fmt.Sprintf("symmetric split %v | %v", a, b)
	}
	return fmt.Sprintf("asymmetric split %v -> %v (replies lost)", a, b)
}

// SplitOff cuts the given nodes off from the other present ones, both
// ways, replacing any earlier partition, and describes it.
func (nw *Network) SplitOff(ids []uint64) string {
	nw.Heal()
	var rest []uint64
	for _, id := range nw.nodes() {
		if !slices.Contains(ids, id) {
			rest = append(rest, id)
		}
	}
	for _, x := range ids {
		for _, y := range rest {
			nw.Cut(x, y)
			nw.Cut(y, x)
		}
	}
	return fmt.Sprintf("symmetric split %v | %v", ids, rest)
}

// split draws two non-empty groups covering ids (which it shuffles); a
// focus node goes into the first group, which is then no bigger than the
// second.
func split(rng *rand.Rand, ids []uint64, focus uint64) (a, b []uint64) {
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	k := 1 + rng.IntN(len(ids)-1)
	if focus != 0 {
		i := slices.Index(ids, focus)
		ids[0], ids[i] = ids[i], ids[0]
		k = 1 + rng.IntN(len(ids)/2)
	}
	a, b = slices.Clone(ids[:k]), slices.Clone(ids[k:])
	slices.Sort(a)
	slices.Sort(b)
	return a, b
}

// Route decides the fate of a message sent from -> to: it appends to buf the
// delay of each copy that will arrive (none if the message is lost).
func (nw *Network) Route(rng *rand.Rand, from, to uint64, buf []int64) []int64 {
	if nw.Blocked(from, to) {
		return buf
	}
	f := &nw.Faults
	if from == to {
		return append(buf, f.MinDelay)
	}
	if f.DropRate > 0 && rng.Float64() < f.DropRate {
		return buf
	}
	buf = append(buf, nw.delay(rng))
	if f.DupRate > 0 && rng.Float64() < f.DupRate {
		buf = append(buf, nw.delay(rng))
	}
	return buf
}

func (nw *Network) delay(rng *rand.Rand) int64 {
	f := &nw.Faults
	hi := f.MaxDelay
	if f.LateRate > 0 && rng.Float64() < f.LateRate {
		hi = 10 * f.MaxDelay
	}
	if hi <= f.MinDelay {
		return f.MinDelay
	}
	return f.MinDelay + rng.Int64N(hi-f.MinDelay+1)
}

// String lists the cut links, or "connected".
func (nw *Network) String() string {
	var sb strings.Builder
	for from := 1; from <= nw.n; from++ {
		for to := 1; to <= nw.n; to++ {
			if nw.Blocked(uint64(from), uint64(to)) {
				if sb.Len() > 0 {
					sb.WriteByte(' ')
				}
				fmt.Fprintf(&sb, "%d-x->%d", from, to)
			}
		}
	}
	if sb.Len() == 0 {
		return "connected"
	}
	return sb.String()
}
