package kv

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// gen makes random valid commands over a small key space, so that keys
// collide and every branch of every command is taken.
type gen struct {
	rng  *rand.Rand
	keys []string
}

func newGen(seed uint64) *gen {
	return &gen{
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		keys: []string{"", "a", "ab", "abc", "b", "b/1", "b/2", "b/3", "c", "n", "m"},
	}
}

func (g *gen) key() []byte { return []byte(g.keys[g.rng.IntN(len(g.keys))]) }

func (g *gen) keyList() [][]byte {
	ks := make([][]byte, 1+g.rng.IntN(4))
	for i := range ks {
		ks[i] = g.key()
	}
	return ks
}

func (g *gen) value() []byte {
	switch g.rng.IntN(8) {
	case 0:
		return nil
	case 1:
		return []byte(strconv.FormatInt(math.MaxInt64-g.rng.Int64N(3), 10))
	case 2:
		return []byte(strconv.FormatInt(math.MinInt64+g.rng.Int64N(3), 10))
	case 3, 4:
		return []byte(strconv.Itoa(g.rng.IntN(200) - 100))
	case 5:
		return []byte("0" + strconv.Itoa(g.rng.IntN(10)))
	}
	return []byte(strings.Repeat("x", g.rng.IntN(5)) + "v")
}

func (g *gen) delta() int64 {
	switch g.rng.IntN(6) {
	case 0:
		return math.MaxInt64
	case 1:
		return math.MinInt64
	}
	return g.rng.Int64N(7) - 3
}

// command returns a random command without a request id.
func (g *gen) command() Command {
	c := Command{Op: Op(1 + g.rng.IntN(int(opEnd)-1))}
	switch c.Op {
	case OpGet, OpStrLen:
		c.Key = g.key()
	case OpSet:
		c.Key, c.Value = g.key(), g.value()
		switch g.rng.IntN(3) {
		case 0:
			c.NX = true
		case 1:
			c.XX = true
		}
		c.GetOld = g.rng.IntN(2) == 0
	case OpDel, OpExists, OpMGet:
		c.Keys = g.keyList()
	case OpAppend:
		c.Key, c.Value = g.key(), g.value()
	case OpIncrBy:
		c.Key, c.Delta = g.key(), g.delta()
	case OpCAS:
		c.Key, c.Value = g.key(), g.value()
		if g.rng.IntN(4) == 0 {
			c.ExpectAbsent = true
		} else {
			c.Expected = g.value()
		}
	case OpMSet:
		c.Keys = g.keyList()
		c.Values = make([][]byte, len(c.Keys))
		for i := range c.Values {
			c.Values[i] = g.value()
		}
	case OpScan:
		c.Key, c.Limit = g.key(), g.rng.IntN(5)
		if g.rng.IntN(2) == 0 {
			c.Prefix = []byte(g.keys[1+g.rng.IntN(len(g.keys)-1)][:1])
		}
	}
	return c
}

// model is the obviously right implementation the store is checked
// against: a map, sorting for scans, and sessions that are never evicted.
type model struct {
	data     map[string]string
	sessions map[uint64]modelSession
}

type modelSession struct {
	seq    uint64
	result Result
}

func newModel() *model {
	return &model{data: map[string]string{}, sessions: map[uint64]modelSession{}}
}

func (m *model) apply(c Command) Result {
	id := c.ID
	if c.Op.ReadOnly() || id.ClientID == 0 {
		return m.exec(c)
	}
	if s, ok := m.sessions[id.ClientID]; ok && id.Seq == s.seq {
		return s.result
	} else if ok && id.Seq < s.seq {
		return Result{Err: ErrRequestTooOld}
	} else if !ok && id.Seq != 1 {
		return Result{Err: ErrSessionExpired}
	}
	r := m.exec(c)
	m.sessions[id.ClientID] = modelSession{id.Seq, r}
	return r
}

func (m *model) get(k []byte) Value {
	v, ok := m.data[string(k)]
	return Value{Data: []byte(v), Found: ok}
}

func (m *model) exec(c Command) Result {
	var r Result
	k := string(c.Key)
	switch c.Op {
	case OpGet:
		r.Value = m.get(c.Key)
	case OpSet:
		old := m.get(c.Key)
		if !(c.NX && old.Found) && !(c.XX && !old.Found) {
			m.data[k] = string(c.Value)
			r.Int = 1
		}
		if c.GetOld {
			r.Value = old
		}
	case OpDel:
		for _, key := range c.Keys {
			if _, ok := m.data[string(key)]; ok {
				delete(m.data, string(key))
				r.Int++
			}
		}
	case OpExists:
		for _, key := range c.Keys {
			if _, ok := m.data[string(key)]; ok {
				r.Int++
			}
		}
	case OpAppend:
		m.data[k] += string(c.Value)
		r.Int = int64(len(m.data[k]))
	case OpIncrBy:
		cur := int64(0)
		if v, ok := m.data[k]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			// Redis accepts exactly the canonical decimal forms.
			if err != nil || strconv.FormatInt(n, 10) != v {
				return Result{Err: ErrNotInteger}
			}
			cur = n
		}
		sum := cur + c.Delta
		if (c.Delta > 0 && sum < cur) || (c.Delta < 0 && sum > cur) {
			return Result{Err: ErrOverflow}
		}
		m.data[k] = strconv.FormatInt(sum, 10)
		r.Int = sum
	case OpCAS:
		v, ok := m.data[k]
		if (c.ExpectAbsent && !ok) || (!c.ExpectAbsent && ok && v == string(c.Expected)) {
			m.data[k] = string(c.Value)
			r.Int = 1
		}
	case OpMSet:
		for i, key := range c.Keys {
			m.data[string(key)] = string(c.Values[i])
		}
	case OpMGet:
		for _, key := range c.Keys {
			r.Values = append(r.Values, m.get(key))
		}
	case OpStrLen:
		r.Int = int64(len(m.data[k]))
	case OpScan:
		limit := cmpOr(c.Limit, DefaultScanLimit)
		var matching []string
		for key := range m.data {
			if key >= k && strings.HasPrefix(key, string(c.Prefix)) {
				matching = append(matching, key)
			}
		}
		slices.Sort(matching)
		for i, key := range matching {
			if i == limit {
				r.Cursor = []byte(key)
				break
			}
			r.Keys = append(r.Keys, []byte(key))
		}
	case OpCount:
		r.Int = int64(len(m.data))
	}
	return r
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// client hands out request ids that follow the protocol, and remembers
// what it sent so that it can replay it.
type client struct {
	id   uint64
	seq  uint64
	sent [][]byte
}

func (c *client) next(rng *rand.Rand) RequestID {
	c.seq += 1 + uint64(rng.IntN(2)) // gaps are allowed
	if c.seq == 2 && len(c.sent) == 0 {
		c.seq = 1 // a session starts at 1
	}
	return RequestID{ClientID: c.id, Seq: c.seq}
}

// TestModel applies a random stream of commands, retries, stale retries
// and requests from forgotten sessions to the store and to the model, and
// compares every result. Every so often the store is replaced by one
// restored from its snapshot, which must carry on identically.
func TestModel(t *testing.T) {
	steps := 20000
	if testing.Short() {
		steps = 3000
	}
	for seed := uint64(1); seed <= 3; seed++ {
		g := newGen(seed)
		s, m := New(), newModel()
		clients := []*client{{id: 1}, {id: 2}, {id: 1 << 40}, {id: math.MaxUint64}}
		for step := range steps {
			c := g.command()
			var enc []byte
			switch p := g.rng.IntN(100); {
			case c.Op.ReadOnly() && p < 50:
				// Reads usually bypass the log.
				want, got := m.apply(c), s.Read(&c)
				if !sameResult(got, want) {
					t.Fatalf("seed %d step %d: Read %+v = %v, model %v", seed, step, c, got, want)
				}
				continue
			case p < 10:
				cl := clients[g.rng.IntN(len(clients))]
				if len(cl.sent) == 0 {
					continue
				}
				enc = cl.sent[g.rng.IntN(len(cl.sent))] // a retry, maybe stale
				c, _ = UnmarshalCommand(enc)
			case p < 12:
				c.ID = RequestID{ClientID: 1000 + uint64(step), Seq: 2} // forgotten
			case p < 80:
				cl := clients[g.rng.IntN(len(clients))]
				c.ID = cl.next(g.rng)
				enc = c.Marshal()
				cl.sent = append(cl.sent, enc)
			}
			if enc == nil {
				enc = c.Marshal()
			}
			want, got := m.apply(c), s.Apply(uint64(step+1), enc)
			if !sameResult(got, want) {
				t.Fatalf("seed %d step %d: Apply %+v = %v, model %v", seed, step, c, got, want)
			}
			if step%997 == 0 {
				s = restored(t, snapshotBytes(t, s))
			}
		}
		checkContents(t, s, m.data)
	}
}

// TestDeterminism applies the same random stream, with many clients and a
// small session table so that eviction happens all the time, to two stores
// and to a third restored from the first's snapshot halfway through: all
// three answer alike and end with byte-identical snapshots.
func TestDeterminism(t *testing.T) {
	steps := 6000
	if testing.Short() {
		steps = 1500
	}
	limits := sessionLimits{count: 6, bytes: 6*sessionOverhead + 40}
	g := newGen(42)
	a, b := newStore(limits), newStore(limits)
	var c *Store
	ids, seqs := make([]uint64, 20), make([]uint64, 20)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	nextID := uint64(len(ids) + 1)
	for step := range steps {
		cmd := g.command()
		cl := g.rng.IntN(len(ids) + 1)
		if cl < len(ids) {
			if g.rng.IntN(4) > 0 {
				seqs[cl]++ // otherwise a retry of the last one
			}
			cmd.ID = RequestID{ClientID: ids[cl], Seq: max(seqs[cl], 1)}
		}
		enc := cmd.Marshal()
		switch g.rng.IntN(50) {
		case 0:
			enc = nil // an empty entry
		case 1:
			enc = enc[:len(enc)-1] // garbage
		}
		index := uint64(step + 1)
		ra, rb := a.Apply(index, enc), b.Apply(index, enc)
		if !sameResult(ra, rb) {
			t.Fatalf("step %d: results differ: %v and %v", step, ra, rb)
		}
		if ra.Err == ErrSessionExpired {
			ids[cl], seqs[cl] = nextID, 0 // evicted: carry on as a new client
			nextID++
		}
		if c != nil {
			if rc := c.Apply(index, enc); !sameResult(rc, ra) {
				t.Fatalf("step %d: restored store answers %v, want %v", step, rc, ra)
			}
		}
		if step == steps/2 {
			c = newStore(limits)
			if err := c.Restore(bytes.NewReader(snapshotBytes(t, a))); err != nil {
				t.Fatal(err)
			}
		}
	}
	sa := snapshotBytes(t, a)
	if !bytes.Equal(sa, snapshotBytes(t, b)) || !bytes.Equal(sa, snapshotBytes(t, c)) {
		t.Fatal("snapshots differ")
	}
	if n := a.sessions.byClient.Len(); n > limits.count || a.sessions.bytes > limits.bytes {
		t.Errorf("session table of %d sessions, %d bytes exceeds its limits", n, a.sessions.bytes)
	}
}
