package e2e

import (
	"fmt"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability check models each key as a register with get, set
// and compare-and-swap, and checks the keys of a history one by one
// (porcupine's partitions): operations on different keys never constrain
// each other.

type regOp uint8

const (
	opGet regOp = iota
	opSet
	opCAS
)

func (o regOp) String() string { return [...]string{"get", "set", "cas"}[o] }

type regInput struct {
	op       regOp
	key      string
	value    string // set, cas: the new value
	expected string // cas
}

type regOutput struct {
	value   string // get
	found   bool   // get
	swapped bool   // cas
	// unknown: a write whose outcome the client never learned. It may have
	// taken effect at any moment after its call, or never; it is recorded
	// as returning at the end of time, so porcupine may place it anywhere
	// after its call, including after everything else (never).
	unknown bool
}

// regState is one key's value; comparable, as porcupine's default equality
// needs.
type regState struct {
	value string
	found bool
}

var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := make(map[string]int)
		var parts [][]porcupine.Operation
		for _, op := range history {
			k := op.Input.(regInput).key
			i, ok := byKey[k]
			if !ok {
				i = len(parts)
				byKey[k] = i
				parts = append(parts, nil)
			}
			parts[i] = append(parts[i], op)
		}
		return parts
	},
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(regState), input.(regInput), output.(regOutput)
		switch in.op {
		case opGet:
			return out.found == st.found && out.value == st.value, st
		case opSet:
			return true, regState{value: in.value, found: true}
		default: // opCAS; a missing key never matches
			swap := st.found && st.value == in.expected
			if !out.unknown && out.swapped != swap {
				return false, st
			}
			if swap {
				st = regState{value: in.value, found: true}
			}
			return true, st
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		var res string
		switch {
		case out.unknown:
			res = "unknown"
		case in.op == opGet && !out.found:
			res = "nil"
		case in.op == opGet:
			res = out.value
		case in.op == opSet:
			res = "OK"
		default:
			res = fmt.Sprint(out.swapped)
		}
		switch in.op {
		case opGet:
			return fmt.Sprintf("get(%s) -> %s", in.key, res)
		case opSet:
			return fmt.Sprintf("set(%s, %s) -> %s", in.key, in.value, res)
		default:
			return fmt.Sprintf("cas(%s, %s, %s) -> %s", in.key, in.expected, in.value, res)
		}
	},
	DescribeState: func(state any) string {
		if st := state.(regState); st.found {
			return st.value
		}
		return "nil"
	},
}

// history records operations from many goroutines, with times on the
// monotonic clock relative to its start.
type history struct {
	start time.Time

	mu  sync.Mutex // guards ops
	ops []porcupine.Operation
}

func newHistory() *history { return &history{start: time.Now()} }

// now is a time to record as an operation's call or return.
func (h *history) now() int64 { return int64(time.Since(h.start)) }

// add records an operation that returned at ret.
func (h *history) add(client int, in regInput, call int64, out regOutput, ret int64) {
	if out.unknown {
		ret = math.MaxInt64
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// check fails t if the history is not linearizable, and leaves a
// visualization of it in a file it names.
func (h *history) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	pending := 0
	for _, op := range ops {
		if op.Output.(regOutput).unknown {
			pending++
		}
	}
	begin := time.Now()
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, time.Minute)
	t.Logf("linearizability check of %d operations (%d with unknown outcome): %s in %v", len(ops), pending, res, time.Since(begin).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		f, err := os.CreateTemp("", "raftkv-history-*.html")
		if err != nil {
			t.Fatalf("history is not linearizable (and its visualization could not be saved: %v)", err)
		}
		defer f.Close()
		if err := porcupine.Visualize(registerModel, info, f); err != nil {
			t.Fatalf("history is not linearizable (and its visualization could not be saved: %v)", err)
		}
		t.Fatalf("history is not linearizable; see %s", f.Name())
	case porcupine.Unknown:
		// The checker ran out of time without finding a violation.
		t.Log("NOTE: the linearizability check timed out without finding a violation")
	}
}

// TestRegisterModel checks the model on histories whose verdict is known,
// so that a passing check of a real history means something.
func TestRegisterModel(t *testing.T) {
	set := func(k, v string) regInput { return regInput{op: opSet, key: k, value: v} }
	get := func(k string) regInput { return regInput{op: opGet, key: k} }
	cas := func(k, from, to string) regInput { return regInput{op: opCAS, key: k, expected: from, value: to} }
	ok := regOutput{}
	val := func(v string) regOutput { return regOutput{value: v, found: true} }
	swapped := regOutput{swapped: true}
	lost := regOutput{unknown: true}
	op := func(client int, in regInput, call int64, out regOutput, ret int64) porcupine.Operation {
		if out.unknown {
			ret = math.MaxInt64
		}
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	for _, c := range []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"read your write", []porcupine.Operation{op(0, set("k", "a"), 0, ok, 1), op(0, get("k"), 2, val("a"), 3)}, true},
		{"stale read", []porcupine.Operation{op(0, set("k", "a"), 0, ok, 1), op(1, get("k"), 2, ok, 3)}, false},
		{"concurrent read may miss", []porcupine.Operation{op(0, set("k", "a"), 0, ok, 5), op(1, get("k"), 1, ok, 2)}, true},
		{"keys are independent", []porcupine.Operation{op(0, set("k", "a"), 0, ok, 1), op(1, get("j"), 2, ok, 3)}, true},
		{"unknown write seen later", []porcupine.Operation{op(0, set("k", "a"), 0, lost, 0), op(1, get("k"), 5, val("a"), 6)}, true},
		{"unknown write never seen", []porcupine.Operation{op(0, set("k", "a"), 0, lost, 0), op(1, get("k"), 5, ok, 6)}, true},
		{"unknown write cannot precede its call", []porcupine.Operation{op(1, get("k"), 0, val("a"), 1), op(0, set("k", "a"), 2, lost, 0)}, false},
		{"unknown write seen, then gone", []porcupine.Operation{op(0, set("k", "a"), 0, lost, 0), op(1, get("k"), 5, val("a"), 6), op(1, get("k"), 7, ok, 8)}, false},
		{"cas swaps", []porcupine.Operation{op(0, set("k", "a"), 0, ok, 1), op(0, cas("k", "a", "b"), 2, swapped, 3), op(0, get("k"), 4, val("b"), 5)}, true},
		{"cas of a missing key", []porcupine.Operation{op(0, cas("k", "", "b"), 0, swapped, 1)}, false},
		{"cas that should have swapped", []porcupine.Operation{op(0, set("k", "a"), 0, ok, 1), op(0, cas("k", "a", "b"), 2, ok, 3)}, false},
		{"unknown cas applied", []porcupine.Operation{op(0, set("k", "a"), 0, ok, 1), op(0, cas("k", "a", "b"), 2, lost, 0), op(1, get("k"), 4, val("b"), 5)}, true},
	} {
		if got := porcupine.CheckOperations(registerModel, c.ops); got != c.want {
			t.Errorf("%s: linearizable %v, want %v", c.name, got, c.want)
		}
	}
}
