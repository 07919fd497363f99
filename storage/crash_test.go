package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
)

var errPowerCut = errors.New("power cut")

// crashRun is a workload run on a disk that lost power at some point.
type crashRun struct {
	mem  *vfs.Mem
	opts Options
	ops  int    // disk operations that succeeded
	pre  *model // everything acknowledged before the power cut
	op   *op    // what was in flight, or nil (Open, or nothing)
}

// runUntilPowerCut runs a random workload (seeded) whose disk fails every
// operation after the first cutAt; cutAt < 0 never fails.
func runUntilPowerCut(t *testing.T, seed uint64, steps, cutAt int) crashRun {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	r := crashRun{mem: vfs.NewMem()}
	r.mem.SetFail(func(vfs.Op, string) error {
		if cutAt >= 0 && r.ops >= cutAt {
			return errPowerCut
		}
		r.ops++
		return nil
	})
	r.opts = memOpts(r.mem, nil)
	r.opts.KeepEntries = rng.Uint64N(3)
	r.opts.SegmentSize = 128 + rng.Int64N(512)
	r.opts.CacheBytes = 1 + rng.Int64N(300)
	r.pre = newModel(r.opts.KeepEntries)
	s, err := Open(testDir, r.opts)
	if err != nil {
		if !errors.Is(err, errPowerCut) {
			t.Fatalf("seed %d: Open: %v", seed, err)
		}
		return r
	}
	defer s.Close()
	for range steps {
		o := nextOp(rng, r.pre, false)
		before := r.pre.clone()
		if err := o.apply(s, r.pre); err != nil {
			if !errors.Is(err, errPowerCut) {
				t.Fatalf("seed %d: %v: %v", seed, o, err)
			}
			r.pre, r.op = before, &o
			return r
		}
	}
	return r
}

// outcomes returns every state recovery may legitimately produce: the
// acknowledged state, plus the in-flight operation done, or for a Save any
// prefix of its entries (a torn batch; its hard state comes last).
func (r crashRun) outcomes() []*model {
	out := []*model{r.pre}
	if r.op == nil {
		return out
	}
	o := *r.op
	if o.kind == opAppend || o.kind == opOverwrite {
		for k := 1; k <= len(o.ents); k++ {
			m := r.pre.clone()
			m.save(raftpb.HardState{}, o.ents[:k])
			out = append(out, m)
		}
	}
	done := r.pre.clone()
	switch o.kind {
	case opAppend, opOverwrite, opHardState:
		done.save(o.hs, o.ents)
	case opLocalSnapshot, opLeaderSnapshot:
		done.saveSnapshot(o.snap)
	case opCompact:
		done.compact(o.index)
	}
	return append(out, done)
}

// TestCrashAtEveryWrite cuts the power at every disk operation of random
// workloads (appends, overwrites, snapshots, compactions), then recovers
// from what a real disk could hold: synced data, plus any part of unsynced
// writes and directory changes, possibly zero-filled. Recovery must
// succeed, keep everything acknowledged, and add at most part of the
// operation in flight.
func TestCrashAtEveryWrite(t *testing.T) {
	seeds, steps, images := 4, 60, 3
	if testing.Short() {
		seeds, steps, images = 2, 40, 2
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			crashAtEveryWrite(t, seed, steps, images)
		})
	}
}

func crashAtEveryWrite(t *testing.T, seed uint64, steps, images int) {
	total := runUntilPowerCut(t, seed, steps, -1).ops
	for cut := 0; cut <= total; cut++ {
		r := runUntilPowerCut(t, seed, steps, cut)
		rng := rand.New(rand.NewPCG(seed, uint64(cut)))
		for img := range images {
			disk := r.mem.Crash(rng)
			opts := r.opts
			opts.fs = disk
			if err := checkRecovery(opts, r.outcomes(), rng); err != nil {
				t.Fatalf("seed %d, power cut after %d of %d disk operations, during %v, image %d: %v", seed, cut, total, r.op, img, err)
			}
		}
	}
}

func checkRecovery(opts Options, outcomes []*model, rng *rand.Rand) error {
	s, err := Open(testDir, opts)
	if err != nil {
		return fmt.Errorf("recovery failed: %w", err)
	}
	defer s.Close()
	var errs []error
	for i, want := range outcomes {
		m := want.clone()
		err := m.adoptFirst(s)
		if err == nil {
			err = m.check(s, rng)
		}
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("outcome %d: %w", i, err))
	}
	return fmt.Errorf("recovered state matches no allowed outcome:\n%w", errors.Join(errs...))
}
