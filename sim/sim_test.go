package sim

import (
	"cmp"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft"
)

var (
	seedFlag     = flag.String("seed", "", "run only this seed and print its trace (replays a failure)")
	seedsFlag    = flag.Int("sim.seeds", 2000, "seeds TestSim and TestKnobs run (300 with -short)")
	durationFlag = flag.Duration("sim.duration", 0, "soak: TestSim and TestKV run fresh seeds for this long instead")
	majorityFlag = flag.Bool("sim.majoritychanges", false, "TestSim and TestKV also move majorities at once (Options.MajorityChanges)")
	changeFlag   = flag.Int("sim.changeevery", 0, "TestSim and TestKV change the membership in every run, every this many ticks on average (0: as drawn)")
)

// replaySeed returns the seed given with -seed, if any.
func replaySeed(t *testing.T) (uint64, bool) {
	t.Helper()
	if *seedFlag == "" {
		return 0, false
	}
	seed, err := strconv.ParseUint(*seedFlag, 10, 64)
	if err != nil {
		t.Fatalf("-seed=%q: %v", *seedFlag, err)
	}
	return seed, true
}

// seedCount is the number of seeds a flag asks for, at most short with
// -short.
func seedCount(flag *int, short int) int {
	if testing.Short() {
		return min(*flag, short)
	}
	return *flag
}

// sweep runs seeds on every CPU until next returns false or stop does, and
// returns how many ran, their summed stats and the failed results by seed.
func sweep(next func() (uint64, bool), options func(seed uint64) Options, stop func(Result) bool) (seeds int, total Stats, failed []Result) {
	var mu sync.Mutex // guards next, stop, seeds, total and failed
	var wg sync.WaitGroup
	done := false
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				mu.Lock()
				seed, ok := next()
				if !ok || done {
					mu.Unlock()
					return
				}
				mu.Unlock()
				res := Run(seed, options(seed))
				mu.Lock()
				seeds++
				total.Add(res.Stats)
				if res.Failure != nil {
					failed = append(failed, res)
				}
				if stop != nil && stop(res) {
					done = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(failed, func(a, b Result) int { return cmp.Compare(a.Seed, b.Seed) })
	return seeds, total, failed
}

// seedSource yields seeds 1..n, or with -sim.duration fresh seeds (that
// nobody ran before) until the time is up.
func seedSource(t *testing.T, n int) func() (uint64, bool) {
	if *durationFlag == 0 {
		return counter(n)
	}
	deadline := time.Now().Add(*durationFlag)
	seed := uint64(time.Now().UnixNano())
	t.Logf("soak for %v from seed %d", *durationFlag, seed)
	return func() (uint64, bool) {
		seed++
		return seed, time.Now().Before(deadline)
	}
}

// counter yields 1..n.
func counter(n int) func() (uint64, bool) {
	var i uint64
	return func() (uint64, bool) {
		i++
		return i, i <= uint64(n)
	}
}

func summary(seeds int, s Stats, failures int) string {
	line := fmt.Sprintf("sim: %d seeds, %d failures, %d steps, %d elections, %d commits (%d crashes, %d partitions, %d snapshots taken, %d installed, %d reads answered, slowest recovery %d ticks)",
		seeds, failures, s.Steps, s.Elections, s.Commits, s.Crashes, s.Partitions, s.Snapshots, s.Installed, s.Reads, s.RecoveryTicks)
	if s.Changes > 0 {
		line += fmt.Sprintf(", %d membership changes applied (%d nodes joined, %d removed)", s.Changes, s.Joined, s.Removed)
	}
	if s.Ops > 0 {
		line += fmt.Sprintf(", %d kv operations answered and checked", s.Ops)
	}
	return line
}

func replayCommand(test string, seed uint64) string {
	cmd := fmt.Sprintf("go test ./sim -run '%s' -seed=%d -v", test, seed)
	if *majorityFlag {
		cmd += " -sim.majoritychanges"
	}
	if *changeFlag > 0 {
		cmd += fmt.Sprintf(" -sim.changeevery=%d", *changeFlag)
	}
	return cmd
}

// runOne replays a single seed, printing its report, and fails if it fails.
func runOne(t *testing.T, test string, seed uint64, opts Options) Result {
	t.Helper()
	res := Run(seed, opts)
	if res.Failure != nil {
		t.Errorf("%s", res.Report(replayCommand(test, seed)))
	} else {
		t.Logf("seed %d passed: %s\n%s", seed, opts, summary(1, res.Stats, 0))
	}
	return res
}

// runSeeds runs seeds 1..n (or the soak, or one replayed seed), each with
// the options draw gives it, and fails on any violated rule; test is the
// -run pattern that replays a seed.
func runSeeds(t *testing.T, test string, n int, draw func(seed uint64) Options) {
	t.Helper()
	if *majorityFlag || *changeFlag > 0 {
		plain := draw
		draw = func(seed uint64) Options {
			o := plain(seed)
			o.MajorityChanges = o.MajorityChanges || *majorityFlag
			if *changeFlag > 0 {
				o.Joiners, o.ChangeEvery = maxJoiners, *changeFlag
			}
			return o
		}
	}
	if seed, ok := replaySeed(t); ok {
		runOne(t, test, seed, draw(seed))
		return
	}
	seeds, total, failed := sweep(seedSource(t, n), draw, nil)
	// Printed, not logged, so that it shows without -v (go test shows a
	// passing package's output when run in its directory).
	fmt.Println(summary(seeds, total, len(failed)))
	reportFailures(t, test, failed)
}

// TestSim runs the default seeds (or the soak, or one replayed seed) and
// fails on any violated rule.
func TestSim(t *testing.T) {
	runSeeds(t, "TestSim$", seedCount(seedsFlag, 300), Draw)
}

// reportFailures prints the first few failures in full and every failed
// seed in a line.
func reportFailures(t *testing.T, test string, failed []Result) {
	t.Helper()
	for i, res := range failed {
		if i == 3 {
			t.Errorf("... and %d more failures", len(failed)-3)
			break
		}
		t.Errorf("%s", res.Report(replayCommand(test, res.Seed)))
	}
	for _, res := range failed {
		t.Errorf("failed seed %d: %s", res.Seed, res.Failure.Violation)
	}
}

// TestReplayIsDeterministic runs seeds twice: a seed is only worth printing
// if it replays the same steps.
func TestReplayIsDeterministic(t *testing.T) {
	for _, draw := range []func(uint64) Options{Draw, DrawKV} {
		for seed := uint64(1); seed <= 20; seed++ {
			a, b := Run(seed, draw(seed)), Run(seed, draw(seed))
			if a.Fingerprint != b.Fingerprint || a.Stats != b.Stats {
				t.Fatalf("seed %d (%s) ran differently twice: %x %+v vs %x %+v", seed, a.Options, a.Fingerprint, a.Stats, b.Fingerprint, b.Stats)
			}
		}
	}
}

// knob is one deliberately broken rule of the core and the fault mix that
// lets the simulator catch it quickly.
type knob struct {
	name string
	set  func(*raft.TestingKnobs)
	bias func(*Options)
}

var knobs = []knob{
	{
		name: "SkipUpToDateCheck",
		set:  func(k *raft.TestingKnobs) { k.SkipUpToDateCheck = true },
	},
	{
		name: "CommitOldTermByCounting",
		set:  func(k *raft.TestingKnobs) { k.CommitOldTermByCounting = true },
		// Figure 8 needs a follower far behind, caught up one old-term
		// entry per round trip by a leader that counts each ack toward
		// commit, while a node holding a later-term entry at those indexes
		// is still electable. Long runs of short partitions in a small
		// cluster that skips PreVote and CheckQuorum (both of which damp
		// elections), with small messages and one append in flight, make
		// that window wide and frequent.
		bias: func(o *Options) {
			o.Nodes = 3
			o.ChaosTicks = 1000
			o.Raft.PreVote, o.Raft.CheckQuorum = false, false
			o.Raft.ElectionTicks, o.Raft.HeartbeatTicks = 5, 1
			o.Raft.MaxSizePerMsg, o.Raft.MaxInflightMsgs, o.Raft.MaxInflightBytes = 64, 1, 0
			o.Mix = Mix{
				Name:           "figure8",
				Link:           LinkFaults{MinDelay: 1, MaxDelay: 100},
				Partitions:     []PartitionKind{Symmetric},
				PartitionEvery: 1,
				ProposeEvery:   20,
			}
			o.SetBounds()
		},
	},
	{
		name: "SkipJointConsensus",
		set:  func(k *raft.TestingKnobs) { k.SkipJointConsensus = true },
		bias: membershipChurn,
	},
	{
		name: "AllowConcurrentConfChanges",
		set:  func(k *raft.TestingKnobs) { k.AllowConcurrentConfChanges = true },
		bias: membershipChurn,
	},
	{
		name: "RemovedNodesKeepVoting",
		set:  func(k *raft.TestingKnobs) { k.RemovedNodesKeepVoting = true },
		bias: membershipChurn,
	},
	{
		name: "ForgetVoteOnRestart",
		set:  func(k *raft.TestingKnobs) { k.ForgetVoteOnRestart = true },
	},
	{
		name: "SkipConflictTruncation",
		set:  func(k *raft.TestingKnobs) { k.SkipConflictTruncation = true },
	},
}

// membershipChurn changes the membership often, in every run, majorities
// included.
func membershipChurn(o *Options) {
	o.Joiners = maxJoiners
	o.ChangeEvery = 3
	o.MajorityChanges = true
}

func (k knob) options(seed uint64) Options {
	o := Draw(seed)
	k.set(&o.Raft.Knobs)
	if k.bias != nil {
		k.bias(&o)
	}
	return o
}

// caught reports whether a run broke a safety rule. Each knob breaks one,
// and only that counts as catching it: a run may also stall for reasons of
// its own (MajorityChanges, say).
func caught(r Result) bool { return r.Failure != nil && r.Failure.Rule != RuleLiveness }

// TestKnobs proves the checks are not vacuous: each switch that breaks one
// safety rule of the core must be caught within the default seed count.
func TestKnobs(t *testing.T) {
	for _, k := range knobs {
		t.Run(k.name, func(t *testing.T) {
			test := "TestKnobs/" + k.name + "$"
			if seed, ok := replaySeed(t); ok {
				if res := Run(seed, k.options(seed)); caught(res) {
					t.Logf("caught as expected:\n%s", res.Report(replayCommand(test, seed)))
				} else {
					t.Errorf("seed %d: knob %s went unnoticed", seed, k.name)
				}
				return
			}
			seeds, _, failed := sweep(counter(seedCount(seedsFlag, 300)), k.options, caught)
			failed = slices.DeleteFunc(failed, func(r Result) bool { return !caught(r) })
			if len(failed) == 0 {
				t.Fatalf("%s: no safety violation found in %d seeds", k.name, seeds)
			}
			f := failed[0]
			t.Logf("%s caught after %d seeds by seed %d: %v\nreplay: %s", k.name, seeds, f.Seed, f.Failure.Violation, replayCommand(test, f.Seed))
		})
	}
}
