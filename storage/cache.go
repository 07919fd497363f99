package storage

import "github.com/raftkv/raftkv/raft/raftpb"

// cache keeps the newest entries of the log in memory, within a byte
// budget (by Entry.Size), so the reads the core makes most (recent entries
// for followers that keep up, and for applying) never touch the disk.
type cache struct {
	ents []raftpb.Entry // consecutive, ending at the log's last entry
	size uint64
	max  uint64
}

// first returns the index of the oldest cached entry, or 0 when empty.
func (c *cache) first() uint64 {
	if len(c.ents) == 0 {
		return 0
	}
	return c.ents[0].Index
}

// truncate drops entries i and after.
func (c *cache) truncate(i uint64) {
	if len(c.ents) == 0 || i > c.ents[len(c.ents)-1].Index {
		return
	}
	if i <= c.first() {
		c.clear()
		return
	}
	k := int(i - c.first())
	for _, e := range c.ents[k:] {
		c.size -= e.Size()
	}
	clear(c.ents[k:])
	c.ents = c.ents[:k]
}

// append adds e, the log's new last entry, and evicts the oldest entries
// beyond the budget.
func (c *cache) append(e raftpb.Entry) {
	if len(c.ents) > 0 && c.ents[len(c.ents)-1].Index+1 != e.Index {
		c.clear()
	}
	c.ents = append(c.ents, e)
	c.size += e.Size()
	drop := 0
	for c.size > c.max && drop < len(c.ents) {
		c.size -= c.ents[drop].Size()
		drop++
	}
	c.dropFront(drop)
}

// compact drops entries up to index i.
func (c *cache) compact(i uint64) {
	if len(c.ents) == 0 || i < c.first() {
		return
	}
	drop := min(int(i-c.first()+1), len(c.ents))
	for _, e := range c.ents[:drop] {
		c.size -= e.Size()
	}
	c.dropFront(drop)
}

func (c *cache) dropFront(k int) {
	if k == 0 {
		return
	}
	// Zero the dropped slots so their data can be freed before the
	// backing array is.
	clear(c.ents[:k])
	c.ents = c.ents[k:]
}

func (c *cache) clear() {
	clear(c.ents)
	c.ents = c.ents[:0]
	c.size = 0
}

// slice returns entries [lo, hi), which must be cached, without aliasing
// the cache's array.
func (c *cache) slice(lo, hi uint64) []raftpb.Entry {
	f := c.first()
	return append([]raftpb.Entry(nil), c.ents[lo-f:hi-f]...)
}
