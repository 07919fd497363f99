package server

import (
	crand "crypto/rand"
	"encoding/binary"
	"sync"
)

// Bounds of the SCAN cursor table.
const (
	maxCursors     = 4096
	maxCursorBytes = 16 << 20
)

// cursorTable maps the numeric cursors SCAN hands to Redis clients onto
// the keys kv's scan resumes from. Clients parse cursors as 64-bit
// numbers, and keys are up to kv.MaxKeySize bytes, so the key cannot be
// the cursor itself. The table is shared by the node's connections (client
// libraries spread one SCAN loop over a pool of connections) and bounded:
// the oldest cursors are forgotten first, after which using them is an
// error. Cursors start at a random base, so a cursor from another node or
// an earlier run is almost surely unknown rather than silently wrong.
type cursorTable struct {
	mu    sync.Mutex // guards the fields below
	next  uint64
	keys  map[uint64][]byte
	order []uint64 // ids, oldest first
	bytes int      // total length of the keys
}

func newCursorTable() *cursorTable {
	var b [8]byte
	crand.Read(b[:])
	// The top bit is left clear so that cursors stay clear of 0 (the start)
	// for the table's life.
	return &cursorTable{next: binary.LittleEndian.Uint64(b[:]) >> 1, keys: make(map[uint64][]byte)}
}

// put remembers key and returns its cursor.
func (t *cursorTable) put(key []byte) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	id := t.next
	t.keys[id] = key // kv never changes bytes it handed out
	t.order = append(t.order, id)
	t.bytes += len(key)
	for len(t.order) > maxCursors || t.bytes > maxCursorBytes {
		old := t.order[0]
		t.order = t.order[1:]
		t.bytes -= len(t.keys[old])
		delete(t.keys, old)
	}
	return id
}

// get returns the key cursor id resumes from.
func (t *cursorTable) get(id uint64) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, ok := t.keys[id]
	return k, ok
}
