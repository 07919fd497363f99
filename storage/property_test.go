package storage

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/raftkv/raftkv/storage/internal/vfs"
)

// TestAgainstModel runs random sequences of appends, overwrites, hard
// state changes, invalid saves, snapshots (local and from a leader),
// compactions, reopens and crashes, comparing every read with the model
// after each step.
func TestAgainstModel(t *testing.T) {
	seeds, steps := 30, 300
	if testing.Short() {
		seeds, steps = 8, 200
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			runAgainstModel(t, seed, steps)
		})
	}
}

func runAgainstModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	mem := vfs.NewMem()
	opts := memOpts(mem, nil)
	opts.KeepEntries = rng.Uint64N(4)
	opts.SegmentSize = 128 + rng.Int64N(1024)
	opts.CacheBytes = 1 + rng.Int64N(400)
	s, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(opts.KeepEntries)
	for step := range steps {
		o := nextOp(rng, m, true)
		switch o.kind {
		case opReopen, opCrash:
			if err := s.Close(); err != nil {
				t.Fatalf("seed %d step %d: close: %v", seed, step, err)
			}
			if o.kind == opCrash {
				// Everything acknowledged was synced, so a crash
				// may only undo unsynced directory changes.
				mem = mem.Crash(rng)
				opts.fs = mem
			}
			if s, err = Open(testDir, opts); err != nil {
				t.Fatalf("seed %d step %d: %v: %v", seed, step, o, err)
			}
			err = m.adoptFirst(s)
		default:
			err = o.apply(s, m)
		}
		if err == nil {
			err = m.check(s, rng)
		}
		if err != nil {
			t.Fatalf("seed %d step %d after %v: %v", seed, step, o, err)
		}
	}
	_ = s.Close()
}
