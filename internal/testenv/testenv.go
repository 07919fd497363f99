// Package testenv holds the few helpers every networked test in raftkv
// needs: waiting for a condition without sleeping blindly, finding free
// loopback addresses, and a logger that stays quiet unless -v is given.
// Only tests import it.
package testenv

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// WaitTimeout bounds every wait for a condition. Conditions normally hold
// within milliseconds; the bound only matters when something is broken, or
// the machine is starved, so it is generous.
const WaitTimeout = 30 * time.Second

// pollInterval is the shortest wait between two checks of a condition.
const pollInterval = 2 * time.Millisecond

// Eventually polls cond until it holds, failing the test if it does not
// within WaitTimeout. what names the awaited condition in the failure.
// Between checks it waits at least as long as the last check took, so an
// expensive condition (one that runs a command, say) uses at most half the
// time it polls for.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		start := time.Now()
		if cond() {
			return
		}
		if start.After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
		wait.Reset(max(pollInterval, time.Since(start)))
		<-wait.C
	}
}

// FreeAddrs returns n distinct loopback addresses nothing listens on at the
// moment of the call. All n are held open together while they are chosen, so
// they differ. Ports come from below Linux's default ephemeral range
// (32768-60999): a port the kernel picked for ":0" can be handed out again
// as the source port of any outgoing connection before the test binds it,
// which made tests fail with "address in use". Another test process could
// still take a port first, but it has to pick the same one at random.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	lns := make([]net.Listener, 0, n)
	addrs := make([]string, 0, n)
	for tries := 0; len(lns) < n; tries++ {
		if tries == 1000 {
			t.Fatalf("find %d free ports: only %d found", n, len(lns))
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", minPort+rand.IntN(maxPort-minPort)))
		if err != nil {
			continue // taken: try another
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		if err := ln.Close(); err != nil {
			t.Fatalf("release a free port: %v", err)
		}
	}
	return addrs
}

// The range FreeAddrs picks ports from.
const minPort, maxPort = 20000, 32000

// FreePortBlocks returns the first ports of count blocks of n consecutive
// loopback ports nothing listens on at the moment of the call, for a
// program that takes a first port and counts up from it. The ports come
// from FreeAddrs' range, for the same reason, and all blocks are held open
// together while they are chosen, so they do not overlap.
func FreePortBlocks(t testing.TB, count, n int) []int {
	t.Helper()
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	var firsts []int
	for tries := 0; len(firsts) < count; tries++ {
		if tries == 1000 {
			t.Fatalf("find %d blocks of %d free consecutive ports: only %d found", count, n, len(firsts))
		}
		first, size := minPort+rand.IntN(maxPort-minPort-n), 0
		for ; size < n; size++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first+size))
			if err != nil {
				break // taken: try another block
			}
			held = append(held, ln)
		}
		if size == n {
			firsts = append(firsts, first)
		}
	}
	return firsts
}

// FreeAddr returns one loopback address nothing listens on (see FreeAddrs).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return FreeAddrs(t, 1)[0]
}

// Logger logs through t at debug level when the test runs with -v, and
// discards everything otherwise.
func Logger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// View is what AgreedLeader needs to know of one node.
type View struct {
	Running bool   // a stopped node is ignored
	ID      uint64 // the node's id
	Lead    uint64 // the leader it knows, 0 if none
	Term    uint64
	Leading bool // it is the leader itself
}

// AgreedLeader waits until every running node knows the same leader in the
// same term and that leader is running and leading, and returns its index in
// the slice views returns.
func AgreedLeader(t testing.TB, views func() []View) int {
	t.Helper()
	lead := -1
	Eventually(t, "one leader that every running node knows", func() bool {
		vs := views()
		var id, term uint64
		for _, v := range vs {
			if !v.Running {
				continue
			}
			if v.Lead == 0 || (id != 0 && (v.Lead != id || v.Term != term)) {
				return false
			}
			id, term = v.Lead, v.Term
		}
		for i, v := range vs {
			if v.Running && v.ID == id && v.Leading {
				lead = i
				return true
			}
		}
		return false
	})
	return lead
}
