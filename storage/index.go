package storage

import (
	"slices"
	"sort"
)

// index knows, for every entry of the log, its term and where its record
// is on disk, in about four bytes per entry: offsets are kept per segment,
// terms per run of equal terms. With it, any entry can be read back from
// disk without keeping entries in memory.
//
// The entries are (base, base+n]; base is the entry the log starts after
// (the snapshot's, or the last compacted one) and only its term is known.
type index struct {
	base, baseTerm uint64
	n              uint64
	spans          []span    // consecutive runs of entries, oldest first
	terms          []termRun // oldest first; terms[0].first == base+1
}

// span is a run of consecutive entries whose records are in one segment.
// Entries that were live at once are at increasing positions, so a
// segment holds at most one span.
type span struct {
	seq   uint64
	first uint64
	offs  []uint32
}

// termRun says that entries from first on have term, up to the next run.
type termRun struct{ first, term uint64 }

func (x *index) last() uint64 { return x.base + x.n }

// term returns the term of entry i, for base <= i <= last.
func (x *index) term(i uint64) uint64 {
	if i == x.base {
		return x.baseTerm
	}
	k := sort.Search(len(x.terms), func(k int) bool { return x.terms[k].first > i })
	return x.terms[k-1].term
}

// has reports whether the log holds entry i with the given term.
func (x *index) has(i, term uint64) bool {
	return i >= x.base && i <= x.last() && x.term(i) == term
}

// spanOf returns the position in spans of the span holding entry i, for
// base < i <= last.
func (x *index) spanOf(i uint64) int {
	return sort.Search(len(x.spans), func(k int) bool { return x.spans[k].first > i }) - 1
}

// truncate removes entries i and after, for base < i <= last+1.
func (x *index) truncate(i uint64) {
	if i > x.last() {
		return
	}
	k := x.spanOf(i)
	if sp := &x.spans[k]; sp.first < i {
		sp.offs = sp.offs[:i-sp.first]
		k++
	}
	clear(x.spans[k:])
	x.spans = x.spans[:k]
	t := sort.Search(len(x.terms), func(t int) bool { return x.terms[t].first >= i })
	x.terms = x.terms[:t]
	x.n = i - 1 - x.base
}

// append adds entry last+1 with its term and position.
func (x *index) append(term, seq uint64, off int64) {
	i := x.last() + 1
	if k := len(x.spans) - 1; k >= 0 && x.spans[k].seq == seq {
		x.spans[k].offs = append(x.spans[k].offs, uint32(off))
	} else {
		x.spans = append(x.spans, span{seq: seq, first: i, offs: []uint32{uint32(off)}})
	}
	if k := len(x.terms) - 1; k < 0 || x.terms[k].term != term {
		x.terms = append(x.terms, termRun{first: i, term: term})
	}
	x.n++
}

// reset empties the log, which now starts after base.
func (x *index) reset(base, baseTerm uint64) {
	*x = index{base: base, baseTerm: baseTerm}
}

// compact forgets entries up to c, for base < c <= last.
func (x *index) compact(c uint64) {
	x.baseTerm = x.term(c)
	if c == x.last() {
		x.reset(c, x.baseTerm)
		return
	}
	k := x.spanOf(c + 1)
	x.spans = slices.Delete(x.spans, 0, k)
	if sp := &x.spans[0]; sp.first <= c {
		sp.offs = sp.offs[c+1-sp.first:]
		sp.first = c + 1
		if len(sp.offs) < cap(sp.offs)/2 {
			sp.offs = slices.Clone(sp.offs) // let the compacted front be freed
		}
	}
	t := sort.Search(len(x.terms), func(t int) bool { return x.terms[t].first > c+1 }) - 1
	x.terms = slices.Delete(x.terms, 0, t)
	x.terms[0].first = c + 1
	x.n -= c - x.base
	x.base = c
}

// firstSeq returns the oldest segment holding a live entry.
func (x *index) firstSeq() (uint64, bool) {
	if len(x.spans) == 0 {
		return 0, false
	}
	return x.spans[0].seq, true
}

// piece is where to read some consecutive entries from: a segment and the
// offsets of the records.
type piece struct {
	seq   uint64
	first uint64
	offs  []uint32
}

// locate returns where entries [lo, lo+n) are, for base < lo and
// lo+n-1 <= last. The offsets are copied: the index may change once the
// caller lets go of the lock.
func (x *index) locate(lo, n uint64) []piece {
	var out []piece
	for k := x.spanOf(lo); n > 0; k++ {
		sp := &x.spans[k]
		from := lo - sp.first
		m := min(uint64(len(sp.offs))-from, n)
		out = append(out, piece{seq: sp.seq, first: lo, offs: slices.Clone(sp.offs[from : from+m])})
		lo += m
		n -= m
	}
	return out
}
