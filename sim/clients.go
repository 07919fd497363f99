package sim

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/internal/register"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// Clients of the kv store (Options.Clients of them) each keep one
// operation outstanding on a small key set, as a real client library does:
// writes carry a kv.RequestID and are retried unchanged at another node
// when the asked one does not answer in time; reads go through ReadIndex
// and are served from the asked node's store once it has applied the read
// index. Every invocation and response is recorded in simulated time, and
// at the end of the run porcupine checks that the history is linearizable.

// clientKeys are the keys clients work on: few, so that operations collide.
var clientKeys = []string{"a", "b", "c"}

// CheckTimeout bounds porcupine's search per run; a run whose history it
// cannot decide in time fails, so histories are kept small enough that it
// never has to give up.
const CheckTimeout = 10 * time.Second

type client struct {
	idx     int    // porcupine's ClientId
	session uint64 // kv ClientID
	seq     uint64 // kv Seq of the last request
	// gen is bumped when an operation ends, so that its pending timeout
	// event is recognized as stale.
	gen uint64
	// seen is the last value this client read or wrote per key (empty:
	// none), what its CAS operations expect.
	seen []string
	op   *clientOp
}

// clientOp is a client's outstanding operation.
type clientOp struct {
	hist int    // index in cluster.history
	cmd  []byte // a write's encoding, re-sent unchanged on retry
	in   register.Input
	// node and inc are the node incarnation the client waits for: a
	// node that crashed since answers nothing.
	node, inc uint64
	read      uint64 // a read's read-index id at that node
	readIndex uint64 // ... and the index it was given, once indexed
	indexed   bool
}

// startClients creates the clients; each first acts within a few ticks.
func (c *cluster) startClients() {
	if c.opts.Clients == 0 {
		return
	}
	if _, ok := c.nodes[0].sm.(*KVStore); !ok {
		c.check.failf(RuleContract, "kv clients need KVStore state machines, not %T", c.nodes[0].sm)
		return
	}
	for i := range c.opts.Clients {
		cl := &client{idx: i, session: uint64(i + 1), seen: make([]string, len(clientKeys))}
		c.clients = append(c.clients, cl)
		c.schedule(event{at: c.rng.Int64N(3 * TickInterval), kind: evClient, node: uint64(i + 1)})
	}
}

// clientAct runs when a client's think time or timeout is over: it starts
// its next operation, or retries the outstanding one at another node.
func (c *cluster) clientAct(cl *client) {
	if cl.op == nil {
		c.invoke(cl)
	}
	c.ask(cl)
	// Patience: a couple of election timeouts, enough for a new leader.
	wait := int64(2*c.opts.Raft.ElectionTicks+c.rng.IntN(c.opts.Raft.ElectionTicks)) * TickInterval
	c.schedule(event{at: c.now + wait, kind: evClient, node: uint64(cl.idx + 1), inc: cl.gen})
}

// invoke makes up a client's next operation and records its invocation.
func (c *cluster) invoke(cl *client) {
	k := c.rng.IntN(len(clientKeys))
	op := &clientOp{hist: len(c.history), in: register.Input{Key: clientKeys[k]}}
	switch r := c.rng.IntN(10); {
	case r < 4:
		op.in.Op = register.Get
	default:
		cl.seq++
		value := fmt.Sprintf("%d.%d", cl.session, cl.seq)
		cmd := kv.Command{ID: kv.RequestID{ClientID: cl.session, Seq: cl.seq}, Key: []byte(op.in.Key), Value: []byte(value)}
		op.in.Value = value
		if r < 7 {
			op.in.Op, cmd.Op = register.Set, kv.OpSet
		} else {
			op.in.Op, cmd.Op = register.CAS, kv.OpCAS
			op.in.Expected = cl.seen[k]
			op.in.Absent = op.in.Expected == ""
			cmd.Expected, cmd.ExpectAbsent = []byte(op.in.Expected), op.in.Absent
		}
		op.cmd = cmd.Marshal()
	}
	cl.op = op
	c.history = append(c.history, porcupine.Operation{ClientId: cl.idx, Input: op.in, Call: c.now, Return: -1})
}

// ask sends a client's outstanding operation to a random live node.
func (c *cluster) ask(cl *client) {
	op := cl.op
	n := c.randomLive()
	if n == nil {
		return
	}
	op.node, op.inc, op.indexed = n.id, n.inc, false
	if op.cmd != nil {
		err := n.core.Propose(op.cmd)
		c.note(n.id, "client %d asks %s: %v", cl.idx, register.Describe(op.in, register.Output{}), err)
		c.touched(n)
		if c.opts.EarlyWrites && err == nil && op.in.Op == register.Set {
			c.finish(cl, register.Output{})
		}
		return
	}
	if c.opts.StaleReads {
		c.serveRead(cl, n)
		return
	}
	c.seq++
	op.read = c.seq
	c.check.readIssued(c.seq)
	c.note(n.id, "client %d asks get(%s), read index request #%d", cl.idx, op.in.Key, c.seq)
	n.core.ReadIndex(binary.BigEndian.AppendUint64(nil, c.seq))
	c.touched(n)
}

// waiting returns the client whose outstanding operation node n, in its
// current incarnation, is to answer, if any matches.
func (c *cluster) waiting(n *node, match func(op *clientOp) bool) *client {
	for _, cl := range c.clients {
		if op := cl.op; op != nil && op.node == n.id && op.inc == n.inc && match(op) {
			return cl
		}
	}
	return nil
}

// appliedByClient answers the client waiting at n for the write n just
// applied, with the store's result: a duplicate gets the remembered
// result of its first application, which is what exactly-once promises.
func (c *cluster) appliedByClient(n *node, e *raftpb.Entry) {
	id, err := kv.PeekRequestID(e.Data)
	if err != nil || id.ClientID == 0 || id.ClientID > uint64(len(c.clients)) {
		return
	}
	cl := c.clients[id.ClientID-1]
	if op := cl.op; op == nil || op.node != n.id || op.inc != n.inc || !bytes.Equal(op.cmd, e.Data) {
		return
	}
	res := n.sm.(*KVStore).Last
	if res.Err != nil {
		c.check.failf(RuleLinearizable, "node %d applied client %d's %s with error %v", n.id, cl.idx, register.Describe(cl.op.in, register.Output{}), res.Err)
		return
	}
	c.finish(cl, register.Output{Swapped: res.Int == 1})
}

// readIndexed notes the read index n gave a client's read.
func (c *cluster) readIndexed(n *node, rs raft.ReadState) {
	if len(rs.Context) != 8 {
		return
	}
	read := binary.BigEndian.Uint64(rs.Context)
	if cl := c.waiting(n, func(op *clientOp) bool { return op.cmd == nil && op.read == read }); cl != nil {
		cl.op.readIndex, cl.op.indexed = rs.Index, true
	}
}

// serveReads answers the reads waiting at n whose read index its store
// has applied.
func (c *cluster) serveReads(n *node) {
	applied := n.sm.(*KVStore).Store.AppliedIndex()
	for {
		cl := c.waiting(n, func(op *clientOp) bool { return op.indexed && op.readIndex <= applied })
		if cl == nil {
			return
		}
		c.serveRead(cl, n)
	}
}

func (c *cluster) serveRead(cl *client, n *node) {
	res := n.sm.(*KVStore).Store.Read(&kv.Command{Op: kv.OpGet, Key: []byte(cl.op.in.Key)})
	c.finish(cl, register.Output{Value: string(res.Value.Data), Found: res.Value.Found})
}

// finish records a client's response and lets it think before the next
// operation.
func (c *cluster) finish(cl *client, out register.Output) {
	op := cl.op
	h := &c.history[op.hist]
	h.Output, h.Return = out, c.now
	k := slices.Index(clientKeys, op.in.Key)
	switch {
	case op.in.Op == register.Get:
		cl.seen[k] = out.Value
	case op.in.Op == register.Set || out.Swapped:
		cl.seen[k] = op.in.Value
	}
	c.note(op.node, "client %d answered: %s", cl.idx, register.Describe(op.in, out))
	c.stats.Ops++
	cl.op = nil
	cl.gen++
	c.schedule(event{at: c.now + c.rng.Int64N(3*TickInterval), kind: evClient, node: uint64(cl.idx + 1), inc: cl.gen})
}

// checkHistory closes the history (writes never answered may have happened
// or not; reads never answered are dropped) and checks it.
func (c *cluster) checkHistory() {
	ops := c.history[:0]
	for _, op := range c.history {
		if op.Return < 0 {
			if op.Input.(register.Input).Op == register.Get {
				continue
			}
			op.Output, op.Return = register.Output{Unknown: true}, math.MaxInt64
		}
		ops = append(ops, op)
	}
	model := register.Model()
	switch porcupine.CheckOperationsTimeout(model, ops, CheckTimeout) {
	case porcupine.Ok:
	case porcupine.Unknown:
		c.check.failf(RuleLinearizable, "porcupine could not decide within %v whether the %d operations are linearizable", CheckTimeout, len(ops))
	default:
		for _, part := range model.Partition(ops) {
			if !porcupine.CheckOperations(model, part) {
				c.check.failf(RuleLinearizable, "the history of key %q is not linearizable:\n%s", part[0].Input.(register.Input).Key, describeHistory(part))
				return
			}
		}
	}
}

// describeHistory lists operations by invocation time, in ticks.
func describeHistory(ops []porcupine.Operation) string {
	ops = slices.Clone(ops)
	slices.SortFunc(ops, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	var sb strings.Builder
	for _, op := range ops {
		ret := "never"
		if op.Return != math.MaxInt64 {
			ret = fmt.Sprintf("%.2f", float64(op.Return)/TickInterval)
		}
		fmt.Fprintf(&sb, "    client %d [%.2f, %s] %s\n", op.ClientId, float64(op.Call)/TickInterval, ret, register.Describe(op.Input.(register.Input), op.Output.(register.Output)))
	}
	return sb.String()
}
