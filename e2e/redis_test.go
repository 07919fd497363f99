package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/raftkv/raftkv/internal/register"
)

func redisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	rc := redis.NewClient(&redis.Options{
		Addr: addr,
		// A retried write could be applied twice (it would carry a new
		// request id): the history must hold what the client asked for.
		MaxRetries:  -1,
		DialTimeout: time.Second,
		PoolSize:    1,
	})
	t.Cleanup(func() { rc.Close() })
	return rc
}

func TestRedisWritesThroughFollowersReadsEverywhere(t *testing.T) {
	needBinary(t)
	procs, _ := serveCluster(t)
	leader, _ := agreedLeader(t, procs...)
	ctx := context.Background()
	clients := make([]*redis.Client, len(procs))
	for i, p := range procs {
		clients[i] = redisClient(t, p.redis)
	}
	for i, p := range procs {
		if p == leader {
			continue
		}
		key, value := "through-"+p.name, "written at "+p.name
		if err := clients[i].Set(ctx, key, value, 0).Err(); err != nil {
			t.Fatalf("SET through follower %s: %v", p.name, err)
		}
		// Reads are linearizable on every node: each sees the write at once.
		for j, q := range procs {
			if got, err := clients[j].Get(ctx, key).Result(); err != nil || got != value {
				t.Errorf("GET %s from %s: got %q, %v; want %q", key, q.name, got, err, value)
			}
		}
	}
}

// outcome classifies how a command ended.
type outcome uint8

const (
	done       outcome = iota // answered
	notApplied                // failed, and certainly changed nothing
	unknown                   // a write that may or may not have been applied
)

// classify tells what err says about a command's effect, and whether the
// connection is worth leaving for another node. Anything unexpected fails
// the test.
func classify(t *testing.T, err error) (o outcome, moveOn bool) {
	var opErr *net.OpError
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return done, false
	case strings.HasPrefix(err.Error(), "TRYAGAIN"):
		// The server says which: "was not applied" or "may or may not".
		if strings.Contains(err.Error(), "may or may not") {
			return unknown, true
		}
		return notApplied, true
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return notApplied, true // never reached a node
	case errors.As(err, &opErr), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		strings.Contains(err.Error(), "EOF"), strings.Contains(err.Error(), "i/o timeout"):
		return unknown, true // sent, then lost the connection or the patience
	}
	t.Errorf("unexpected error: %v", err)
	return notApplied, true
}

// refused reports whether err is a dial that the other end refused: nothing
// listens there, so nothing was sent.
func refused(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial" && errors.Is(err, syscall.ECONNREFUSED)
}

// loadWorker is one client of the load: sequential commands on a few
// shared keys (checked for linearizability) and on keys of its own (checked
// to survive), moving to the next node whenever one fails it.
type loadWorker struct {
	t       *testing.T
	id      int
	clients []*redis.Client // one per node
	cur     int
	hist    *history
	rng     *rand.Rand
	seen    map[string]string // the last value read per shared key, for CAS

	client    int               // the history's client id; a new one after an unknown outcome
	acked     map[string]string // own keys whose SET was acknowledged
	ownSeq    int
	ok        atomic.Int64 // commands answered
	okAfter   atomic.Int64 // commands answered that began after since
	since     atomic.Int64 // a history time
	clientIDs *atomic.Int64

	// How long the worker went unanswered; read once it has stopped.
	failingSince int64         // the call of the first failed command since the last answer; -1 if none
	failStreak   int           // failed commands in a row, not counting refused dials
	maxStreak    int           // the longest failStreak
	maxOutage    time.Duration // the longest time from a failed command's call to the next answer
}

var sharedKeys = []string{"reg-a", "reg-b", "reg-c", "reg-d"}

func (w *loadWorker) run(ctx context.Context) {
	for n := 0; ctx.Err() == nil; n++ {
		rc := w.clients[w.cur]
		// Each command's own timeout, above the server's 2s bounded wait, so
		// that a reply is a TRYAGAIN rather than a client timeout.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var (
			in  register.Input
			out register.Output
			err error
		)
		call := w.hist.now()
		switch r := w.rng.IntN(100); {
		case r < 15:
			w.ownSeq++
			key, value := fmt.Sprintf("own-%d-%d", w.id, w.ownSeq), fmt.Sprint(w.rng.Uint64())
			err = rc.Set(cctx, key, value, 0).Err()
			if err == nil {
				w.acked[key] = value
			}
			cancel()
			w.count(call, err)
			continue
		case r < 55:
			in = register.Input{Op: register.Get, Key: sharedKeys[w.rng.IntN(len(sharedKeys))]}
			out.Value, err = rc.Get(cctx, in.Key).Result()
			out.Found = err == nil
			if out.Found {
				w.seen[in.Key] = out.Value
			}
		case r < 85:
			in = register.Input{Op: register.Set, Key: sharedKeys[w.rng.IntN(len(sharedKeys))], Value: fmt.Sprintf("w%d-%d", w.id, n)}
			err = rc.Set(cctx, in.Key, in.Value, 0).Err()
		default:
			in = register.Input{Op: register.CAS, Key: sharedKeys[w.rng.IntN(len(sharedKeys))], Value: fmt.Sprintf("w%d-%d", w.id, n)}
			in.Expected = w.seen[in.Key]
			var swapped int64
			swapped, err = rc.Do(cctx, "CAS", in.Key, in.Expected, in.Value).Int64()
			out.Swapped = swapped == 1
		}
		cancel()
		ret := w.hist.now()
		switch w.count(call, err) {
		case done:
			w.hist.add(w.client, in, call, out, ret)
		case unknown:
			if in.Op != register.Get {
				out.Unknown = true
				w.hist.add(w.client, in, call, out, ret)
				// The operation stays open forever: later ones belong to
				// another client, as if this one had crashed.
				w.client = int(w.clientIDs.Add(1))
			}
		}
	}
}

// count classifies err, moves to another node if it calls for that, and
// counts successes.
func (w *loadWorker) count(call int64, err error) outcome {
	o, moveOn := classify(w.t, err)
	if moveOn {
		w.cur = (w.cur + 1) % len(w.clients)
	}
	switch {
	case o == done && w.failingSince >= 0:
		w.maxOutage = max(w.maxOutage, time.Duration(w.hist.now()-w.failingSince))
		w.failingSince, w.failStreak = -1, 0
	case o == done:
		w.failStreak = 0
	case w.failingSince < 0:
		w.failingSince = call
	}
	if o != done && !refused(err) {
		// A refused dial costs nothing: a node that is down says so at
		// once, and a client with several endpoints skips it.
		w.failStreak++
		w.maxStreak = max(w.maxStreak, w.failStreak)
	}
	if o == done {
		w.ok.Add(1)
		if call >= w.since.Load() {
			w.okAfter.Add(1)
		}
	}
	return o
}

// TestRedisLinearizableAcrossLeaderKill runs concurrent go-redis clients
// against every node, kills the leader with SIGKILL mid-load, and checks
// that the history is linearizable and every acknowledged write survived,
// on every node, including the killed one once restarted; in both read
// modes.
func TestRedisLinearizableAcrossLeaderKill(t *testing.T) {
	needBinary(t)
	for _, mode := range []string{"safe", "lease"} {
		t.Run(mode, func(t *testing.T) { linearizableAcrossLeaderKill(t, "RAFTKV_READ_MODE="+mode) })
	}
}

func linearizableAcrossLeaderKill(t *testing.T, env ...string) {
	procs, dataDirs := serveCluster(t, env...)
	leader, term := agreedLeader(t, procs...)

	ld := startLoad(t, redisAddrs(procs), 8)
	defer ld.stop()
	eventually(t, "300 commands answered before the kill", func() bool { return ld.total() >= 300 })
	killedAt := time.Now()
	killed := leader
	killed.kill()
	rest := without(procs, killed)
	newLeader, newTerm := agreedLeader(t, rest...)
	t.Logf("killed %s (leader of term %d) after %d commands; %s leads term %d after %v", killed.name, term, ld.total(), newLeader.name, newTerm, time.Since(killedAt).Round(time.Millisecond))
	ld.answeredSinceNow(t, 20, "from the new leader's cluster")
	ld.stop()
	if t.Failed() {
		return
	}

	// The killed node comes back from its data directory and catches up.
	i := indexOf(procs, killed)
	procs[i] = restartServe(t, killed, dataDirs[i], env...)
	agreedLeader(t, procs...)

	ld.checkAcked(t, procs)
	ld.hist.check(t)
}

// redisAddrs returns the Redis addresses of procs.
func redisAddrs(procs []*proc) []string {
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.redis)
	}
	return addrs
}

// load is concurrent loadWorkers against a cluster, sharing one history.
type load struct {
	hist    *history
	workers []*loadWorker
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startLoad starts n workers, each with a client for every Redis address
// of addrs (nodes that may not run yet, or no longer), starting on
// different ones. Stop them with stop.
func startLoad(t *testing.T, addrs []string, n int) *load {
	t.Helper()
	ld := &load{hist: newHistory()}
	clientIDs := new(atomic.Int64)
	clientIDs.Store(int64(n))
	for i := range n {
		w := &loadWorker{
			t: t, id: i, client: i, hist: ld.hist, cur: i % len(addrs),
			rng:  rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano()))),
			seen: make(map[string]string), acked: make(map[string]string), clientIDs: clientIDs,
			failingSince: -1,
		}
		w.since.Store(1<<63 - 1)
		for _, addr := range addrs {
			w.clients = append(w.clients, redisClient(t, addr))
		}
		ld.workers = append(ld.workers, w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ld.cancel = cancel
	for _, w := range ld.workers {
		ld.wg.Go(func() { w.run(ctx) })
	}
	t.Cleanup(ld.stop)
	return ld
}

// stop stops the workers and waits for them; calling it again does nothing.
func (ld *load) stop() {
	ld.cancel()
	ld.wg.Wait()
}

// total returns the number of commands answered so far.
func (ld *load) total() (n int64) {
	for _, w := range ld.workers {
		n += w.ok.Load()
	}
	return n
}

// answeredSinceNow waits until every worker has had n commands answered
// that it sent from now on.
func (ld *load) answeredSinceNow(t *testing.T, n int64, what string) {
	t.Helper()
	now := ld.hist.now()
	for _, w := range ld.workers {
		w.okAfter.Store(0)
		w.since.Store(now)
	}
	eventually(t, fmt.Sprintf("every client to get %d answers %s", n, what), func() bool {
		for _, w := range ld.workers {
			if w.okAfter.Load() < n {
				return false
			}
		}
		return true
	})
}

// checkAcked checks that every acknowledged write of the workers' own keys
// is on every node of procs. The workers must be stopped.
func (ld *load) checkAcked(t *testing.T, procs []*proc) {
	t.Helper()
	acked := make(map[string]string)
	for _, w := range ld.workers {
		for k, v := range w.acked {
			acked[k] = v
		}
	}
	var keys []string
	for k := range acked {
		keys = append(keys, k)
	}
	for _, p := range procs {
		rc := redisClient(t, p.redis)
		for from := 0; from < len(keys); from += 100 {
			chunk := keys[from:min(from+100, len(keys))]
			var vals []any
			eventually(t, "MGET from "+p.name, func() bool {
				var err error
				vals, err = rc.MGet(context.Background(), chunk...).Result()
				return err == nil
			})
			for j, k := range chunk {
				if v, ok := vals[j].(string); !ok || v != acked[k] {
					t.Errorf("%s: %s = %v, want the acknowledged %q", p.name, k, vals[j], acked[k])
				}
			}
		}
	}
	t.Logf("%d acknowledged writes of own keys present on all %d nodes", len(acked), len(procs))
}
