package sim

import (
	"flag"
	"testing"
)

var kvSeedsFlag = flag.Int("sim.kvseeds", 1500, "seeds TestKV and TestKVBroken run (60 with -short)")

// TestKV runs the kv store on every node with clients reading and writing
// under the faults, and checks each run's history for linearizability.
func TestKV(t *testing.T) {
	runSeeds(t, "TestKV$", seedCount(kvSeedsFlag, 60), DrawKV)
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
			seeds, _, failed := sweep(counter(seedCount(kvSeedsFlag, 60)), b.options, caught)
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
