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
	in   kvInput
	// node and inc are the node incarnation the client waits for: a
	// node that crashed since answers nothing.
	node, inc uint64
	read      uint64 // a read's read-index id at that node
	readIndex uint64 // ... and the index it was given, once indexed
	indexed   bool
}

// kvInput and kvOutput are an operation's porcupine input and output.
type kvInput struct {
	op       kv.Op // OpGet, OpSet or OpCAS
	key      string
	value    string // Set's value, CAS's new value
	expected string // CAS's expected value, unless absent
	absent   bool   // CAS expecting the key to be missing
}

type kvOutput struct {
	value   string // Get
	found   bool   // Get
	swapped bool   // CAS
	unknown bool   // a write never answered: it may or may not have happened
}

// register is the state of one key in the model.
type register struct {
	value string
	found bool
}

// kvModel is a register per key with get, set and compare-and-swap.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string]int{}
		var out [][]porcupine.Operation
		for _, op := range history {
			k := op.Input.(kvInput).key
			i, ok := byKey[k]
			if !ok {
				i = len(out)
				byKey[k] = i
				out = append(out, nil)
			}
			out[i] = append(out[i], op)
		}
		return out
	},
	Init: func() any { return register{} },
	Step: func(state, input, output any) (bool, any) {
		r, in, out := state.(register), input.(kvInput), output.(kvOutput)
		switch in.op {
		case kv.OpGet:
			return out.found == r.found && out.value == r.value, r
		case kv.OpSet:
			return true, register{in.value, true}
		}
		match := r.found && r.value == in.expected
		if in.absent {
			match = !r.found
		}
		if !out.unknown && out.swapped != match {
			return false, r
		}
		if match {
			return true, register{in.value, true}
		}
		return true, r
	},
	DescribeOperation: func(input, output any) string { return describeOp(input.(kvInput), output.(kvOutput)) },
}

func describeOp(in kvInput, out kvOutput) string {
	var s string
	switch in.op {
	case kv.OpGet:
		s = fmt.Sprintf("get(%s)", in.key)
		if out.found {
			return s + " = " + out.value
		}
		return s + " = nil"
	case kv.OpSet:
		s = fmt.Sprintf("set(%s, %s)", in.key, in.value)
	default:
		exp := in.expected
		if in.absent {
			exp = "absent"
		}
		s = fmt.Sprintf("cas(%s, %s -> %s)", in.key, exp, in.value)
		if !out.unknown {
			s += fmt.Sprintf(" = %t", out.swapped)
		}
	}
	if out.unknown {
		s += " (outcome unknown)"
	}
	return s
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
	op := &clientOp{hist: len(c.history), in: kvInput{key: clientKeys[k]}}
	switch r := c.rng.IntN(10); {
	case r < 4:
		op.in.op = kv.OpGet
	default:
		cl.seq++
		value := fmt.Sprintf("%d.%d", cl.session, cl.seq)
		cmd := kv.Command{ID: kv.RequestID{ClientID: cl.session, Seq: cl.seq}, Key: []byte(op.in.key), Value: []byte(value)}
		op.in.value = value
		if r < 7 {
			op.in.op, cmd.Op = kv.OpSet, kv.OpSet
		} else {
			op.in.op, cmd.Op = kv.OpCAS, kv.OpCAS
			op.in.expected = cl.seen[k]
			op.in.absent = op.in.expected == ""
			cmd.Expected, cmd.ExpectAbsent = []byte(op.in.expected), op.in.absent
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
		c.note(n.id, "client %d asks %s: %v", cl.idx, describeOp(op.in, kvOutput{}), err)
		c.touched(n)
		if c.opts.EarlyWrites && err == nil && op.in.op == kv.OpSet {
			c.finish(cl, kvOutput{})
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
	c.note(n.id, "client %d asks get(%s), read index request #%d", cl.idx, op.in.key, c.seq)
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
		c.check.failf(RuleLinearizable, "node %d applied client %d's %s with error %v", n.id, cl.idx, describeOp(cl.op.in, kvOutput{}), res.Err)
		return
	}
	c.finish(cl, kvOutput{swapped: res.Int == 1})
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
	res := n.sm.(*KVStore).Store.Read(&kv.Command{Op: kv.OpGet, Key: []byte(cl.op.in.key)})
	c.finish(cl, kvOutput{value: string(res.Value.Data), found: res.Value.Found})
}

// finish records a client's response and lets it think before the next
// operation.
func (c *cluster) finish(cl *client, out kvOutput) {
	op := cl.op
	h := &c.history[op.hist]
	h.Output, h.Return = out, c.now
	k := slices.Index(clientKeys, op.in.key)
	switch {
	case op.in.op == kv.OpGet:
		cl.seen[k] = out.value
	case op.in.op == kv.OpSet || out.swapped:
		cl.seen[k] = op.in.value
	}
	c.note(op.node, "client %d answered: %s", cl.idx, describeOp(op.in, out))
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
			if op.Input.(kvInput).op == kv.OpGet {
				continue
			}
			op.Output, op.Return = kvOutput{unknown: true}, math.MaxInt64
		}
		ops = append(ops, op)
	}
	switch porcupine.CheckOperationsTimeout(kvModel, ops, CheckTimeout) {
	case porcupine.Ok:
	case porcupine.Unknown:
		c.check.failf(RuleLinearizable, "porcupine could not decide within %v whether the %d operations are linearizable", CheckTimeout, len(ops))
	default:
		for _, part := range kvModel.Partition(ops) {
			if !porcupine.CheckOperations(kvModel, part) {
				c.check.failf(RuleLinearizable, "the history of key %q is not linearizable:\n%s", part[0].Input.(kvInput).key, describeHistory(part))
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
		fmt.Fprintf(&sb, "    client %d [%.2f, %s] %s\n", op.ClientId, float64(op.Call)/TickInterval, ret, describeOp(op.Input.(kvInput), op.Output.(kvOutput)))
	}
	return sb.String()
}
