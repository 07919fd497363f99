package sim

import (
	"flag"
	"fmt"
	"testing"
)

var kvSeedsFlag = flag.Int("sim.kvseeds", 600, "seeds TestKV and TestKVStaleReads run (60 with -short)")

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
	seeds, total, failed := sweep(counter(kvSeedCount()), DrawKV, nil)
	fmt.Println(summary(seeds, total, len(failed)))
	reportFailures(t, "TestKV$", failed)
}

func staleReads(seed uint64) Options {
	o := DrawKV(seed)
	o.StaleReads = true
	return o
}

// TestKVStaleReads proves the history check is not vacuous: reads served
// from a node's store without ReadIndex must be caught within the default
// seed count.
func TestKVStaleReads(t *testing.T) {
	const test = "TestKVStaleReads$"
	caught := func(r Result) bool { return r.Failure != nil && r.Failure.Rule == RuleLinearizable }
	if seed, ok := replaySeed(t); ok {
		if res := Run(seed, staleReads(seed)); caught(res) {
			t.Logf("caught as expected:\n%s", res.Report(replayCommand(test, seed)))
		} else {
			t.Errorf("seed %d: stale reads went unnoticed (%v)", seed, res.Failure)
		}
		return
	}
	seeds, _, failed := sweep(counter(kvSeedCount()), staleReads, caught)
	for _, f := range failed {
		if caught(f) {
			t.Logf("stale reads caught after %d seeds by seed %d: %v\nreplay: %s", seeds, f.Seed, f.Failure.Violation, replayCommand(test, f.Seed))
			return
		}
		t.Errorf("%s", f.Report(replayCommand(test, f.Seed)))
	}
	t.Fatalf("stale reads: no linearizability violation found in %d seeds", seeds)
}
