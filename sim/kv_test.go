package sim

import (
	"flag"
	"fmt"
	"math"
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/kv"
)

var kvSeedsFlag = flag.Int("sim.kvseeds", 1500, "seeds TestKV and TestKVBroken run (60 with -short)")

func kvSeedCount() int {
	if testing.Short() {
		return min(*kvSeedsFlag, 60)
	}
	return *kvSeedsFlag
}

// TestKV runs the kv store on every node with clients reading and writing
// under the faults, and checks each run's history for linearizability.
func TestKV(t *testing.T) {
	if seed, ok := replaySeed(t); ok {
		runOne(t, "TestKV$", seed, DrawKV(seed))
		return
	}
	seeds, total, failed := sweep(seedSource(t, kvSeedCount()), DrawKV, nil)
	fmt.Println(summary(seeds, total, len(failed)))
	reportFailures(t, "TestKV$", failed)
}

// brokenKV is a deliberately broken client runtime.
type brokenKV struct {
	name string
	set  func(*Options)
}

var brokenKVs = []brokenKV{
	{"StaleReads", func(o *Options) { o.StaleReads = true }},
	{"EarlyWrites", func(o *Options) { o.EarlyWrites = true }},
}

func (b brokenKV) options(seed uint64) Options {
	o := DrawKV(seed)
	b.set(&o)
	return o
}

// TestKVBroken proves the history check is not vacuous: each way of
// breaking linearizability must be caught within the default seed count.
func TestKVBroken(t *testing.T) {
	caught := func(r Result) bool { return r.Failure != nil && r.Failure.Rule == RuleLinearizable }
	for _, b := range brokenKVs {
		t.Run(b.name, func(t *testing.T) {
			test := "TestKVBroken/" + b.name + "$"
			if seed, ok := replaySeed(t); ok {
				if res := Run(seed, b.options(seed)); caught(res) {
					t.Logf("caught as expected:\n%s", res.Report(replayCommand(test, seed)))
				} else {
					t.Errorf("seed %d: %s went unnoticed (%v)", seed, b.name, res.Failure)
				}
				return
			}
			seeds, _, failed := sweep(counter(kvSeedCount()), b.options, caught)
			for _, f := range failed {
				if caught(f) {
					t.Logf("%s caught after %d seeds by seed %d: %s\nreplay: %s", b.name, seeds, f.Seed, f.Failure.Rule, replayCommand(test, f.Seed))
					return
				}
				t.Errorf("%s", f.Report(replayCommand(test, f.Seed)))
			}
			t.Fatalf("%s: no linearizability violation found in %d seeds", b.name, seeds)
		})
	}
}

// TestKVModel checks the register model on small histories, unknown
// outcomes included.
func TestKVModel(t *testing.T) {
	set := func(c int, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: kvInput{op: kv.OpSet, key: "a", value: v}, Output: kvOutput{}, Call: call, Return: ret}
	}
	get := func(c int, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: kvInput{op: kv.OpGet, key: "a"}, Output: kvOutput{value: v, found: v != ""}, Call: call, Return: ret}
	}
	cas := func(c int, exp, v string, out kvOutput, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: kvInput{op: kv.OpCAS, key: "a", expected: exp, absent: exp == "", value: v}, Output: out, Call: call, Return: ret}
	}
	never := int64(math.MaxInt64)
	for _, tc := range []struct {
		name string
		ok   bool
		ops  []porcupine.Operation
	}{
		{"read your write", true, []porcupine.Operation{set(0, "1", 0, 1), get(1, "1", 2, 3)}},
		{"stale read", false, []porcupine.Operation{set(0, "1", 0, 1), set(0, "2", 2, 3), get(1, "1", 4, 5)}},
		{"missing key", true, []porcupine.Operation{get(1, "", 0, 1), set(0, "1", 0, 3)}},
		{"cas swapped", true, []porcupine.Operation{set(0, "1", 0, 1), cas(1, "1", "2", kvOutput{swapped: true}, 2, 3), get(0, "2", 4, 5)}},
		{"cas wrongly refused", false, []porcupine.Operation{set(0, "1", 0, 1), cas(1, "1", "2", kvOutput{}, 2, 3)}},
		{"create if absent", true, []porcupine.Operation{cas(1, "", "1", kvOutput{swapped: true}, 0, 1), get(0, "1", 2, 3)}},
		{"unknown write seen", true, []porcupine.Operation{set(0, "1", 0, never), get(1, "1", 2, 3)}},
		{"unknown write unseen", true, []porcupine.Operation{set(0, "1", 0, never), get(1, "", 2, 3)}},
		{"unknown cas applied", true, []porcupine.Operation{set(0, "1", 0, 1), cas(1, "1", "2", kvOutput{unknown: true}, 2, never), get(0, "2", 4, 5)}},
		{"unknown write undone", false, []porcupine.Operation{set(0, "1", 0, never), get(1, "1", 2, 3), get(1, "", 4, 5)}},
	} {
		if got := porcupine.CheckOperations(kvModel, tc.ops); got != tc.ok {
			t.Errorf("%s: linearizable = %t, want %t", tc.name, got, tc.ok)
		}
	}
}
