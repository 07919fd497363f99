package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestFollowerCatchesUpFromSnapshotOver200MiB: a follower down while the
// others took in more than 200 MiB and compacted their logs comes back and
// catches up from one snapshot of all of it, streamed while a writer keeps
// writing; no write fails meanwhile, and the follower then holds every
// value.
func TestFollowerCatchesUpFromSnapshotOver200MiB(t *testing.T) {
	needBinary(t)
	const (
		valueSize = 1 << 20
		values    = 210 // 210 MiB
	)
	// No entries kept below a snapshot: only a snapshot can bring the
	// follower back. Snapshots every 500 entries: about every 2.5 s at
	// the writer's pace, so a few are taken while it runs.
	procs, dataDirs := serveCluster(t, "RAFTKV_SNAPSHOT_ENTRIES=500", "RAFTKV_CATCH_UP_ENTRIES=0")
	leader, _ := agreedLeader(t, procs...)
	follower := without(procs, leader)[0]
	w := startSteadyWriter(t, leader.redis, 5*time.Millisecond)
	caughtUp(t, follower, procs)
	follower.kill()

	begin := time.Now()
	writeBig(t, leader.redis, values, valueSize)
	var filled uint64
	eventually(t, "the leader's status", func() bool {
		st, ok := leader.status()
		filled = st.Commit
		return ok
	})
	t.Logf("wrote %d values of %d bytes in %v, up to index %d", values, valueSize, time.Since(begin).Round(time.Millisecond), filled)
	eventually(t, "the leader to snapshot everything written", func() bool {
		for _, rec := range leader.records("snapshot taken") {
			if idx, _ := rec["index"].(float64); uint64(idx) >= filled {
				return true
			}
		}
		return false
	})

	i := indexOf(procs, follower)
	restarted := time.Now()
	procs[i] = restartServe(t, follower, dataDirs[i])
	caughtUp(t, procs[i], procs)
	done := time.Now()
	w.stop()
	t.Logf("%s caught up in %v", follower.name, done.Sub(restarted).Round(time.Millisecond))

	// It did so from a snapshot of everything.
	var received int64
	for _, rec := range procs[i].records("snapshot transfer started") {
		if rec["transfer"] == "receiving snapshot" {
			b, _ := rec["bytes"].(float64)
			received = max(received, int64(b))
		}
	}
	if received < values*valueSize {
		t.Errorf("%s received a snapshot of at most %d bytes, want one of all %d values of %d bytes", follower.name, received, values, valueSize)
	}
	if len(procs[i].records("installed snapshot from the leader")) == 0 {
		t.Errorf("%s did not log that it installed a snapshot", follower.name)
	}
	for _, rec := range procs[i].records("snapshot transfer done") {
		took, _ := rec["took"].(float64)
		t.Logf("%s: %v in %v at %v", follower.name, rec["transfer"], time.Duration(took), rec["rate"])
	}

	// The writer went on.
	before, during := w.between(time.Time{}, restarted), w.between(restarted, done)
	for _, err := range append(before.errs, during.errs...) {
		t.Errorf("the writer's write failed: %v", err)
	}
	if len(during.took) < 10 {
		t.Errorf("the writer wrote %d times while the follower caught up, want it to go on writing", len(during.took))
	}
	if slowest := slices.Max(append(during.took, 0)); slowest > maxStall {
		t.Errorf("a write took %v while the follower caught up, want at most %v", slowest, maxStall)
	}
	t.Logf("write latency while the %d values were written: %s; while the follower caught up: %s", values, latencies(before.took), latencies(during.took))

	// The follower's own store holds every value (READONLY: read locally).
	rc := redis.NewClient(&redis.Options{
		Addr: procs[i].redis, MaxRetries: -1, PoolSize: 1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() },
	})
	defer rc.Close()
	for k := range values {
		got, err := rc.Get(context.Background(), bigKey(k)).Bytes()
		if err != nil || !bytes.Equal(got, bigValue(k, valueSize)) {
			t.Fatalf("%s: %s: got %d bytes (%v), want the %d written", follower.name, bigKey(k), len(got), err, valueSize)
		}
	}
}

// maxStall bounds a write's latency while a snapshot is taken or sent: the
// server's bounded wait for a write, past which it answers -TRYAGAIN. Writes
// take milliseconds, and up to 0.7 s with two of these tests and a rolling
// restart sharing 2 cores; writes stalled for 3-4 s when the raft loop
// itself wrote snapshots.
const maxStall = 2 * time.Second

func bigKey(k int) string { return fmt.Sprintf("big-%04d", k) }

// bigValue is the value written under bigKey(k): size random bytes from a
// seed of k, so that the test need not keep them.
func bigValue(k, size int) []byte {
	var seed [32]byte
	binary.BigEndian.PutUint64(seed[:], uint64(k))
	b := make([]byte, size)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// writeBig sets bigKey(k) to bigValue(k, size) for k in [0, n) through the
// node at addr, from a few clients at once.
func writeBig(t *testing.T, addr string, n, size int) {
	t.Helper()
	const writers = 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for j := range writers {
		rc := redisClient(t, addr)
		wg.Go(func() {
			for k := j; k < n; k += writers {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := rc.Set(ctx, bigKey(k), bigValue(k, size), 0).Err()
				cancel()
				if err != nil {
					errs <- fmt.Errorf("SET %s: %w", bigKey(k), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// steadyWriter writes a small value to one node on a fixed schedule, one
// every interval, one write at a time: a write due while the previous one
// runs starts as soon as it returns. It records when each write was due and
// began, how long it took, and how long after it was due it completed, which
// counts the writes a stall delayed as well as the one it hit.
type steadyWriter struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards samples
	samples []sample
}

type sample struct {
	due, at time.Time     // when the write was to begin, and began
	took    time.Duration // from at to its answer
	fromDue time.Duration // from when it was due to its answer
	err     error
}

func startSteadyWriter(t *testing.T, addr string, every time.Duration) *steadyWriter {
	t.Helper()
	rc := redisClient(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	w := &steadyWriter{cancel: cancel}
	w.wg.Go(func() {
		wait := time.NewTimer(0)
		defer wait.Stop()
		first := time.Now()
		for n := 0; ; n++ {
			due := first.Add(time.Duration(n) * every)
			wait.Reset(time.Until(due))
			select {
			case <-ctx.Done():
				return
			case <-wait.C:
			}
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			at := time.Now()
			err := rc.Set(wctx, fmt.Sprintf("steady-%d", n%1000), n, 0).Err()
			end := time.Now()
			cancel()
			w.mu.Lock()
			w.samples = append(w.samples, sample{due: due, at: at, took: end.Sub(at), fromDue: end.Sub(due), err: err})
			w.mu.Unlock()
		}
	})
	t.Cleanup(w.stop)
	return w
}

// stop stops the writer and waits for it; calling it again does nothing.
func (w *steadyWriter) stop() {
	w.cancel()
	w.wg.Wait()
}

// caughtUpTo reports whether the writer has answered every write due
// before t.
func (w *steadyWriter) caughtUpTo(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.samples) > 0 && !w.samples[len(w.samples)-1].due.Before(t)
}

// slowest returns the n writes that took longest, slowest first.
func (w *steadyWriter) slowest(n int) []sample {
	w.mu.Lock()
	s := slices.Clone(w.samples)
	w.mu.Unlock()
	slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(b.took, a.took) })
	return s[:min(n, len(s))]
}

// window is what the writes of a span of time saw.
type window struct {
	took    []time.Duration // of the writes that began in the span and succeeded
	errs    []error         // of the writes that began in the span and failed
	fromDue []time.Duration // of the writes due in the span that succeeded
}

// between returns the writes of [from, to). A writer that fell behind its
// schedule begins writes in a span that were due before it.
func (w *steadyWriter) between(from, to time.Time) window {
	w.mu.Lock()
	defer w.mu.Unlock()
	var win window
	for _, s := range w.samples {
		in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
		switch {
		case in(s.at) && s.err != nil:
			win.errs = append(win.errs, s.err)
		case in(s.at):
			win.took = append(win.took, s.took)
		}
		if in(s.due) && s.err == nil {
			win.fromDue = append(win.fromDue, s.fromDue)
		}
	}
	return win
}

// latencies summarizes write latencies as count, p50, p99 and max.
func latencies(took []time.Duration) string {
	if len(took) == 0 {
		return "no writes"
	}
	s := slices.Clone(took)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("%d writes, p50 %v, p99 %v, max %v", len(s), r(q(0.50)), r(q(0.99)), r(s[len(s)-1]))
}
