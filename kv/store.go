package kv

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/google/btree"
)

// item is one key and its value. Items are stored by value in a
// copy-on-write btree, so a Checkpoint's clone never sees later writes.
//
// The bytes of a stored value in [0:len) are never modified: they are
// handed to readers without copying. APPEND may extend a value in place
// into spare capacity that only this item owns, which no earlier holder of
// the shorter slice can see.
type item struct {
	key, value []byte
}

func lessItem(a, b item) bool { return bytes.Compare(a.key, b.key) < 0 }

// btreeDegree suits small items: nodes of up to 63 items.
const btreeDegree = 32

func newTree() *btree.BTreeG[item] { return btree.NewG(btreeDegree, lessItem) }

// Store is the replicated key-value state machine: an ordered key space,
// the index of the last applied log entry, and the session table that
// makes writes exactly-once.
//
// Concurrency: all methods are safe to call from any goroutine. Apply and
// Restore change the state and are meant for the one goroutine that applies
// the log, in log order; Read, AppliedIndex, Checkpoint and Snapshot may run
// concurrently with it from server goroutines. Snapshot holds the lock only
// for an O(1) copy-on-write clone, then streams without blocking Apply.
type Store struct {
	limits sessionLimits // fixed at construction

	// mu guards the fields below: Apply, Restore and Checkpoint take it
	// exclusively (Checkpoint's clone marks the trees shared), reads share it.
	mu       sync.RWMutex
	tree     *btree.BTreeG[item]
	applied  uint64
	sessions sessionTable
}

// New returns an empty store at applied index 0.
func New() *Store { return newStore(sessionLimits{count: MaxSessions, bytes: MaxSessionBytes}) }

func newStore(limits sessionLimits) *Store {
	return &Store{limits: limits, tree: newTree(), sessions: newSessionTable(limits)}
}

// AppliedIndex returns the index of the last log entry applied (or
// restored from a snapshot). A linearizable read whose read index is i may
// be served by Read once AppliedIndex() >= i.
func (s *Store) AppliedIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Apply applies the log entry at index whose data is cmd, and returns the
// command's result. It is deterministic: replicas that apply the same
// entries in the same order hold the same state and return the same
// results.
//
// Every committed entry's index should be passed, in increasing order, gaps
// allowed: an empty cmd (the empty entry of a new leader, or an entry that
// is not for the store, such as a membership change) only advances the
// applied index. An index at or below AppliedIndex changes nothing and
// returns ErrStaleIndex. Bytes that do not decode still advance the index
// and return ErrMalformed or the limit they break.
//
// Writes with a request id are exactly-once (see RequestID). Read commands
// are answered too, without touching sessions, so a runtime may put reads
// through the log if it wants to.
func (s *Store) Apply(index uint64, cmd []byte) Result {
	var c Command
	var err error
	if len(cmd) > 0 {
		c, err = UnmarshalCommand(cmd)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.applied {
		return Result{Err: ErrStaleIndex}
	}
	s.applied = index
	switch {
	case len(cmd) == 0:
		return Result{}
	case err != nil:
		return Result{Err: asError(err)}
	case c.Op.ReadOnly():
		return s.readLocked(&c)
	case c.ID.ClientID == 0:
		return s.writeLocked(&c)
	}
	id := c.ID
	if sess, ok := s.sessions.get(id.ClientID); ok {
		switch {
		case id.Seq == sess.seq:
			touched := *sess
			touched.last = index
			s.sessions.put(&touched)
			return sess.result
		case id.Seq < sess.seq:
			return Result{Err: ErrRequestTooOld}
		}
	} else if id.Seq != 1 {
		return Result{Err: ErrSessionExpired}
	}
	r := s.writeLocked(&c)
	s.sessions.put(&session{client: id.ClientID, seq: id.Seq, last: index, result: r})
	return r
}

// Read answers a read-only command (Get, Exists, MGet, StrLen, Scan,
// Count) from the local state, without the log. It is linearizable when
// called after the store has applied the read index the consensus layer
// gave for it; otherwise it may be stale. Write commands get ErrNotReadOnly.
func (s *Store) Read(c *Command) Result {
	if !c.Op.ReadOnly() {
		return Result{Err: ErrNotReadOnly}
	}
	if err := c.Validate(); err != nil {
		return Result{Err: err}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.readLocked(c)
}

func (s *Store) lookupLocked(key []byte) (item, bool) {
	return s.tree.Get(item{key: key})
}

// getLocked returns key's value clipped to its length, so that a caller
// appending to it cannot write into the store's spare capacity.
func (s *Store) getLocked(key []byte) Value {
	it, ok := s.lookupLocked(key)
	return Value{Data: slices.Clip(it.value), Found: ok}
}

func (s *Store) readLocked(c *Command) Result {
	var r Result
	switch c.Op {
	case OpGet:
		r.Value = s.getLocked(c.Key)
	case OpExists:
		for _, k := range c.Keys {
			if s.tree.Has(item{key: k}) {
				r.Int++
			}
		}
	case OpMGet:
		r.Values = make([]Value, len(c.Keys))
		for i, k := range c.Keys {
			r.Values[i] = s.getLocked(k)
		}
	case OpStrLen:
		it, _ := s.lookupLocked(c.Key)
		r.Int = int64(len(it.value))
	case OpScan:
		r.Keys, r.Cursor = s.scanLocked(c)
	case OpCount:
		r.Int = int64(s.tree.Len())
	}
	return r
}

// scanLocked returns up to a page of keys with c.Prefix, from c.Key on,
// and the first key of the next page.
func (s *Store) scanLocked(c *Command) (keys [][]byte, cursor []byte) {
	limit := c.Limit
	switch {
	case limit == 0:
		limit = DefaultScanLimit
	case limit > MaxScanLimit:
		limit = MaxScanLimit
	}
	start := c.Key
	if bytes.Compare(start, c.Prefix) < 0 {
		start = c.Prefix
	}
	size := 0
	s.tree.AscendGreaterOrEqual(item{key: start}, func(it item) bool {
		if !bytes.HasPrefix(it.key, c.Prefix) {
			return false
		}
		if len(keys) == limit || size >= MaxScanBytes {
			cursor = it.key
			return false
		}
		keys = append(keys, it.key)
		size += len(it.key)
		return true
	})
	return keys, cursor
}

// put stores a copy of key and value in one allocation.
func (s *Store) putLocked(key, value []byte) {
	buf := make([]byte, len(key)+len(value))
	n := copy(buf, key)
	copy(buf[n:], value)
	s.tree.ReplaceOrInsert(item{key: buf[:n:n], value: buf[n:]})
}

// writeLocked executes a write command; c has been validated.
func (s *Store) writeLocked(c *Command) Result {
	var r Result
	switch c.Op {
	case OpSet:
		if !c.NX && !c.XX && !c.GetOld { // the common case, in one descent
			s.putLocked(c.Key, c.Value)
			r.Int = 1
			break
		}
		old := s.getLocked(c.Key)
		if (!c.NX || !old.Found) && (!c.XX || old.Found) {
			s.putLocked(c.Key, c.Value)
			r.Int = 1
		}
		if c.GetOld {
			r.Value = old
		}
	case OpDel:
		for _, k := range c.Keys {
			if _, ok := s.tree.Delete(item{key: k}); ok {
				r.Int++
			}
		}
	case OpAppend:
		old, found := s.lookupLocked(c.Key)
		n := len(old.value) + len(c.Value)
		switch {
		case n > MaxValueSize:
			r.Err = ErrValueTooLarge
		case found:
			// In place when capacity allows; see item.
			s.tree.ReplaceOrInsert(item{key: old.key, value: append(old.value, c.Value...)})
		default:
			s.putLocked(c.Key, c.Value)
		}
		if r.Err == nil {
			r.Int = int64(n)
		}
	case OpIncrBy:
		r = s.incrByLocked(c.Key, c.Delta)
	case OpCAS:
		old, found := s.lookupLocked(c.Key)
		if found != c.ExpectAbsent && (c.ExpectAbsent || bytes.Equal(old.value, c.Expected)) {
			s.putLocked(c.Key, c.Value)
			r.Int = 1
		}
	case OpMSet:
		for i, k := range c.Keys {
			s.putLocked(k, c.Values[i])
		}
	}
	return r
}

func (s *Store) incrByLocked(key []byte, delta int64) Result {
	var cur int64
	if old, found := s.lookupLocked(key); found {
		var err error
		if cur, err = ParseInt(old.value); err != nil {
			return Result{Err: err}
		}
	}
	if (delta < 0 && cur < 0 && delta < math.MinInt64-cur) || (delta > 0 && cur > 0 && delta > math.MaxInt64-cur) {
		return Result{Err: ErrOverflow}
	}
	cur += delta
	var buf [20]byte
	s.putLocked(key, strconv.AppendInt(buf[:0], cur, 10))
	return Result{Int: cur}
}

// ParseInt parses b as Redis parses integer arguments and values
// (string2ll): optional '-', then decimal digits with no leading zero, no
// '+', no spaces, within the int64 range. It returns ErrNotInteger
// otherwise. Servers should parse INCRBY and DECRBY arguments with it.
func ParseInt(b []byte) (int64, error) {
	if len(b) == 1 && b[0] == '0' {
		return 0, nil
	}
	// 20 bytes fit "-9223372036854775808"; longer cannot be in range.
	if len(b) == 0 || len(b) > 20 {
		return 0, ErrNotInteger
	}
	digits := b
	neg := b[0] == '-'
	if neg {
		digits = b[1:]
	}
	if len(digits) == 0 || digits[0] == '0' {
		return 0, ErrNotInteger
	}
	var v uint64 // at most 20 digits: overflow of uint64 checked below
	for _, ch := range digits {
		if ch < '0' || ch > '9' {
			return 0, ErrNotInteger
		}
		d := uint64(ch - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, ErrNotInteger
		}
		v = v*10 + d
	}
	switch {
	case neg && v <= 1<<63:
		return int64(-v), nil // two's complement: also right for 1<<63
	case !neg && v <= math.MaxInt64:
		return int64(v), nil
	}
	return 0, ErrNotInteger
}
