package register

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestModel checks the model on histories whose verdict is known, so that
// a passing check of a real history means something.
func TestModel(t *testing.T) {
	const never = math.MaxInt64
	op := func(client int, in Input, out Output, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	set := func(c int, k, v string, call, ret int64) porcupine.Operation {
		out := Output{Unknown: ret == never}
		return op(c, Input{Op: Set, Key: k, Value: v}, out, call, ret)
	}
	get := func(c int, k, v string, call, ret int64) porcupine.Operation {
		return op(c, Input{Op: Get, Key: k}, Output{Value: v, Found: v != ""}, call, ret)
	}
	cas := func(c int, in Input, swapped bool, call, ret int64) porcupine.Operation {
		in.Op, in.Key = CAS, "k"
		return op(c, in, Output{Swapped: swapped, Unknown: ret == never}, call, ret)
	}
	for _, tc := range []struct {
		name string
		ok   bool
		ops  []porcupine.Operation
	}{
		{"read your write", true, []porcupine.Operation{set(0, "k", "1", 0, 1), get(1, "k", "1", 2, 3)}},
		{"stale read", false, []porcupine.Operation{set(0, "k", "1", 0, 1), set(0, "k", "2", 2, 3), get(1, "k", "1", 4, 5)}},
		{"concurrent read may miss", true, []porcupine.Operation{set(0, "k", "1", 0, 5), get(1, "k", "", 1, 2)}},
		{"keys are independent", true, []porcupine.Operation{set(0, "k", "1", 0, 1), get(1, "j", "", 2, 3)}},
		{"cas swapped", true, []porcupine.Operation{set(0, "k", "1", 0, 1), cas(1, Input{Expected: "1", Value: "2"}, true, 2, 3), get(0, "k", "2", 4, 5)}},
		{"cas wrongly refused", false, []porcupine.Operation{set(0, "k", "1", 0, 1), cas(1, Input{Expected: "1", Value: "2"}, false, 2, 3)}},
		{"cas of a missing key", false, []porcupine.Operation{cas(0, Input{Value: "1"}, true, 0, 1)}},
		{"create if absent", true, []porcupine.Operation{cas(1, Input{Absent: true, Value: "1"}, true, 0, 1), get(0, "k", "1", 2, 3)}},
		{"create if absent refused", false, []porcupine.Operation{set(0, "k", "1", 0, 1), cas(1, Input{Absent: true, Value: "2"}, true, 2, 3)}},
		{"unknown write applied", true, []porcupine.Operation{set(0, "k", "1", 0, never), get(1, "k", "1", 2, 3)}},
		{"unknown write not applied", true, []porcupine.Operation{set(0, "k", "1", 0, never), get(1, "k", "", 2, 3)}},
		{"unknown write before its call", false, []porcupine.Operation{get(1, "k", "1", 0, 1), set(0, "k", "1", 2, never)}},
		{"unknown write undone", false, []porcupine.Operation{set(0, "k", "1", 0, never), get(1, "k", "1", 2, 3), get(1, "k", "", 4, 5)}},
		{"unknown cas applied", true, []porcupine.Operation{set(0, "k", "1", 0, 1), cas(1, Input{Expected: "1", Value: "2"}, false, 2, never), get(0, "k", "2", 4, 5)}},
	} {
		if got := porcupine.CheckOperations(Model(), tc.ops); got != tc.ok {
			t.Errorf("%s: linearizable = %t, want %t", tc.name, got, tc.ok)
		}
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		in   Input
		out  Output
		want string
	}{
		{Input{Op: Get, Key: "k"}, Output{Value: "1", Found: true}, "get(k) = 1"},
		{Input{Op: Get, Key: "k"}, Output{}, "get(k) = nil"},
		{Input{Op: Set, Key: "k", Value: "1"}, Output{Unknown: true}, "set(k, 1) (outcome unknown)"},
		{Input{Op: CAS, Key: "k", Expected: "1", Value: "2"}, Output{Swapped: true}, "cas(k, 1 -> 2) = true"},
		{Input{Op: CAS, Key: "k", Absent: true, Value: "2"}, Output{Unknown: true}, "cas(k, absent -> 2) (outcome unknown)"},
	} {
		if got := Describe(tc.in, tc.out); got != tc.want {
			t.Errorf("Describe(%+v, %+v) = %q, want %q", tc.in, tc.out, got, tc.want)
		}
	}
}
