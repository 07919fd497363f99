package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// foundAll runs Found for every member at once, each in its own directory
// under dirs, and returns the identities.
func foundAll(t *testing.T, members []Member, dirs []string) []Identity {
	t.Helper()
	ids := make([]Identity, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			ids[i], errs[i] = Found(ctxFor(t, waitTimeout), FoundConfig{Name: m.Name, DataDir: dirs[i], Members: members, Logger: testLogger(t)})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("found %s: %v", members[i].Name, err)
		}
	}
	return ids
}

func newMembers(t *testing.T, n int) ([]Member, []string) {
	var ms []Member
	var dirs []string
	for i := range n {
		ms = append(ms, NewMember(fmt.Sprintf("n%d", i+1), freeAddr(t)))
		dirs = append(dirs, t.TempDir())
	}
	return ms, dirs
}

// TestFoundersAgreeOnARandomID: founders started separately agree on one
// cluster id, which is new for each founding of the same members.
func TestFoundersAgreeOnARandomID(t *testing.T) {
	ms, dirs := newMembers(t, 3)
	ids := foundAll(t, ms, dirs)
	for _, id := range ids[1:] {
		if id.ClusterID != ids[0].ClusterID || id.ClusterID == 0 {
			t.Fatalf("founders disagree: %016x and %016x", ids[0].ClusterID, id.ClusterID)
		}
	}
	again := foundAll(t, ms, []string{t.TempDir(), t.TempDir(), t.TempDir()})
	if again[0].ClusterID == ids[0].ClusterID {
		t.Fatal("founding the same members again gave the same cluster id")
	}
	// Found again on a founded directory returns at once.
	id, err := Found(context.Background(), FoundConfig{Name: "n1", DataDir: dirs[0], Members: ms, Logger: testLogger(t)})
	if err != nil || id.ClusterID != ids[0].ClusterID {
		t.Fatalf("Found on a founded directory: %v, %v", id, err)
	}
	// A single founder needs nobody.
	solo := []Member{NewMember("solo", freeAddr(t))}
	if id, err := Found(context.Background(), FoundConfig{Name: "solo", DataDir: t.TempDir(), Members: solo, Logger: testLogger(t)}); err != nil || id.ClusterID == 0 {
		t.Fatalf("single founder: %+v, %v", id, err)
	}
}

// startFounded starts member i of a founded cluster from its directory.
func startFounded(t *testing.T, dir string) *Node {
	t.Helper()
	n, err := Start(Config{DataDir: dir, StateMachine: &recorder{}, TickInterval: 10 * time.Millisecond, ElectionTicks: 20, HeartbeatTicks: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestLeftoverNodeRefused is the bug that random cluster ids fix: a node of
// an earlier cluster, started with the same member list, must not be
// accepted by new founders (it took them over with its old log). The new
// founders refuse to found with it, saying why.
func TestLeftoverNodeRefused(t *testing.T) {
	ms, dirs := newMembers(t, 3)
	foundAll(t, ms, dirs)
	startFounded(t, dirs[0]) // n1 of the earlier cluster, running
	_, err := Found(ctxFor(t, waitTimeout), FoundConfig{Name: "n2", DataDir: t.TempDir(), Members: ms, Logger: testLogger(t)})
	if !errors.Is(err, ErrLeftover) || !contains(err, "left over") {
		t.Fatalf("found with a leftover node: got %v, want ErrLeftover saying it is left over", err)
	}
}

// TestFounderThatMissedTheEndAdopts: a founder that stopped before it knew
// every nonce, while the others finished, adopts their cluster id: it was
// founded with its nonce. One that lost its directory is refused.
func TestFounderThatMissedTheEndAdopts(t *testing.T) {
	ms, dirs := newMembers(t, 3)
	ids := foundAll(t, ms, dirs)
	// Make n3 as it was before it learned the last nonce.
	unfinished := ids[2]
	unfinished.ClusterID = 0
	unfinished.Founding = &Founding{Nonce: ids[2].Founding.Nonce}
	if err := saveIdentity(dirs[2], unfinished); err != nil {
		t.Fatal(err)
	}
	startFounded(t, dirs[0])
	startFounded(t, dirs[1])
	id, err := Found(ctxFor(t, waitTimeout), FoundConfig{Name: "n3", DataDir: dirs[2], Members: ms, Logger: testLogger(t)})
	if err != nil || id.ClusterID != ids[0].ClusterID {
		t.Fatalf("unfinished founder: %016x, %v; want cluster %016x", id.ClusterID, err, ids[0].ClusterID)
	}

	// The same founder with an emptied directory draws a new nonce: the
	// cluster was not founded with it.
	_, err = Found(ctxFor(t, waitTimeout), FoundConfig{Name: "n3", DataDir: t.TempDir(), Members: ms, Logger: testLogger(t)})
	if !errors.Is(err, ErrLeftover) || !contains(err, "lost its data") {
		t.Fatalf("founder with an emptied directory: got %v, want ErrLeftover", err)
	}
}

func TestFoundRefusals(t *testing.T) {
	ms, dirs := newMembers(t, 2)
	ctx := ctxFor(t, waitTimeout)
	// Founders given other member lists.
	other := []Member{ms[0], ms[1], NewMember("n3", freeAddr(t))}
	// Whichever asks first is refused; the other then waits in vain.
	ctx2, cancel2 := context.WithCancel(ctx)
	errc := make(chan error, 2)
	for _, fc := range []FoundConfig{
		{Name: "n1", DataDir: dirs[0], Members: ms, Logger: testLogger(t)},
		{Name: "n2", DataDir: dirs[1], Members: other, Logger: testLogger(t)},
	} {
		go func() {
			_, err := Found(ctx2, fc)
			errc <- err
		}()
	}
	err := <-errc
	cancel2()
	<-errc
	if !contains(err, "other founders") {
		t.Fatalf("founders with different lists: got %v, want a refusal naming other founders", err)
	}
	// A directory that began founding other members.
	if _, err := Found(ctx, FoundConfig{Name: "n1", DataDir: dirs[0], Members: other, Logger: testLogger(t)}); !errors.Is(err, ErrMembershipMismatch) {
		t.Fatalf("directory founding other members: got %v, want ErrMembershipMismatch", err)
	}
	// A directory of another node.
	if _, err := Found(ctx, FoundConfig{Name: "n2", DataDir: dirs[0], Members: ms, Logger: testLogger(t)}); !errors.Is(err, ErrMembershipMismatch) {
		t.Fatalf("another node's directory: got %v, want ErrMembershipMismatch", err)
	}
	for _, bad := range [][]Member{
		{NewMember("n1", "127.0.0.1:1"), NewMember("n2", "127.0.0.1:1")}, // one address twice
		{NewMember("n2", "127.0.0.1:1")},                                 // n1 not a founder
		{NewMember("n1", "nohost")},
	} {
		if _, err := Found(ctx, FoundConfig{Name: "n1", DataDir: t.TempDir(), Members: bad, Logger: testLogger(t)}); err == nil {
			t.Errorf("Found with founders %v succeeded", bad)
		}
	}
	// Cancelled while waiting for the others.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	lonely := []Member{NewMember("n1", freeAddr(t)), NewMember("n2", freeAddr(t))}
	if _, err := Found(cctx, FoundConfig{Name: "n1", DataDir: t.TempDir(), Members: lonely, Logger: testLogger(t)}); !errors.Is(err, context.Canceled) || !contains(err, "n2") {
		t.Fatalf("Found cancelled while waiting: got %v, want context.Canceled naming n2", err)
	}
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// TestStartRefusesUnknownDirectory: a data directory with a log but no identity
// file is not one this version can restart.
func TestStartRefusesUnknownDirectory(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.start(0)
	c.stop(0)
	if err := os.Remove(filepath.Join(c.cfgs[0].DataDir, identityFile)); err != nil {
		t.Fatal(err)
	}
	cfg := c.cfgs[0]
	cfg.StateMachine = &recorder{}
	if n, err := Start(cfg); !errors.Is(err, ErrMembershipMismatch) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("start on a log without identity: got %v, want ErrMembershipMismatch", err)
	}
}
