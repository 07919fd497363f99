package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestGrowToFiveAndShrinkToThreeUnderLoad grows a serving cluster from
// three nodes to five with raftkv serve --join, each new node promoted to
// voter by the leader once it caught up, then removes two of the founders,
// a follower and then the leader, with raftkv members remove; all while
// register clients run on every address, old and new. Every node that stays
// ends with the same view of the membership, each removed node stops
// cleanly, the history is linearizable and every acknowledged write is on
// every remaining node.
func TestGrowToFiveAndShrinkToThreeUnderLoad(t *testing.T) {
	needBinary(t)
	procs, _ := serveCluster(t)
	agreedLeader(t, procs...)
	fresh := newNodes(t, "n4", "n5")
	addrs := redisAddrs(procs)
	for _, nn := range fresh {
		addrs = append(addrs, nn.redis)
	}
	ld := startLoad(t, addrs, 6)
	ld.answeredSinceNow(t, 20, "before the cluster grows")

	for _, nn := range fresh {
		// Through a follower: it points the joiner at the leader.
		leader, _ := agreedLeader(t, procs...)
		p := nn.join(t, without(procs, leader)[0])
		procs = append(procs, p)
		waitMembers(t, procs, voters(procs))
		ld.answeredSinceNow(t, 20, "after "+nn.name+" joined")
	}
	t.Logf("grown to %s", strings.Join(voters(procs), " "))
	// Each became a voter by the leader's promotion, not by asking.
	for _, nn := range fresh {
		promoted := false
		for _, p := range procs {
			for _, rec := range p.records("promoting a joined learner that caught up") {
				promoted = promoted || rec["member"] == nn.name
			}
		}
		if !promoted {
			t.Errorf("no leader logged that it promoted %s", nn.name)
		}
	}

	leader, _ := agreedLeader(t, procs...)
	founders := procs[:3]
	for _, gone := range []*proc{without(founders, leader)[0], leader} {
		removeMember(t, procs, gone.name)
		if code := gone.wait(); code != 0 {
			t.Fatalf("%s exited with %d once removed, want 0", gone.name, code)
		}
		if len(gone.records("removed from the cluster: stopping for good (its data directory is no longer needed)")) == 0 {
			t.Errorf("%s did not say it was removed", gone.name)
		}
		procs = without(procs, gone)
		waitMembers(t, procs, voters(procs))
		ld.answeredSinceNow(t, 20, "after "+gone.name+" was removed")
	}
	ld.stop()
	newLeader, _ := agreedLeader(t, procs...)
	t.Logf("shrunk to %s; %s leads (%s led before the removals)", strings.Join(voters(procs), " "), newLeader.name, leader.name)

	ld.checkAcked(t, procs)
	ld.hist.check(t)
}

// newNode is a node not started yet, its addresses and data directory
// chosen.
type newNode struct {
	name, peer, http, redis, dataDir string
}

// newNodes chooses addresses for new nodes called names. Call it once the
// running nodes listen, so that it cannot choose their ports.
func newNodes(t *testing.T, names ...string) []newNode {
	t.Helper()
	ports := freePorts(t, 3*len(names))
	var out []newNode
	for i, name := range names {
		out = append(out, newNode{name: name, peer: ports[3*i], http: ports[3*i+1], redis: ports[3*i+2], dataDir: t.TempDir()})
	}
	return out
}

// join starts nn with raftkv serve --join, naming member via, with env in
// its environment.
func (nn newNode) join(t *testing.T, via *proc, env ...string) *proc {
	t.Helper()
	p := start(t, nn.name, t.TempDir(), nn.http, env, "serve", "--id", nn.name, "--data-dir", nn.dataDir,
		"--peer-addr", nn.peer, "--join", "http://"+via.http,
		"--http-addr", nn.http, "--redis-addr", nn.redis, "--log-format", "json")
	p.redis = nn.redis
	return p
}

// removeMember runs raftkv members remove name against procs.
func removeMember(t *testing.T, procs []*proc, name string) {
	t.Helper()
	stdout, stderr, code := runCLI(t, nil, "members", "remove", name, "--endpoints="+endpoints(procs), "--timeout=30s")
	if code != 0 {
		t.Fatalf("raftkv members remove %s: exit code %d, stdout %q, stderr %q", name, code, stdout, stderr)
	}
}

// endpoints returns the HTTP addresses of procs, as --endpoints takes them.
func endpoints(procs []*proc) string {
	var eps []string
	for _, p := range procs {
		eps = append(eps, p.http)
	}
	return strings.Join(eps, ",")
}

// voters describes procs as voters, "name:voter", in order of name.
func voters(procs []*proc) []string {
	var out []string
	for _, p := range procs {
		out = append(out, p.name+":voter")
	}
	slices.Sort(out)
	return out
}

// waitMembers waits until every node of procs reports the members want
// ("name:role", in order of name) in its own status.
func waitMembers(t *testing.T, procs []*proc, want []string) {
	t.Helper()
	views := make(map[string][]string)
	defer func() {
		if t.Failed() {
			t.Logf("the members as each node sees them: %v", views)
		}
	}()
	eventually(t, fmt.Sprintf("every node to see the members %v", want), func() bool {
		agree := true
		for _, p := range procs {
			st, ok := p.status()
			if !ok {
				return false
			}
			var view []string
			for _, m := range st.Members {
				view = append(view, m.Name+":"+m.Role)
			}
			views[p.name] = view
			agree = agree && slices.Equal(view, want)
		}
		return agree
	})
}

// TestReplaceNodeWithWipedDataDir follows the procedure for a node whose
// disk was lost, under register load: kill -9 it, wipe its data directory,
// raftkv members remove it, and start a fresh node of the same name and
// addresses with raftkv serve --join. The newcomer catches up from a
// snapshot (the others compacted their logs) and is promoted to voter;
// every node sees the same members, the history is linearizable and every
// acknowledged write is on every node, the newcomer included.
func TestReplaceNodeWithWipedDataDir(t *testing.T) {
	needBinary(t)
	// Snapshots every 500 entries keeping 100 below: the newcomer needs a
	// snapshot.
	env := []string{"RAFTKV_SNAPSHOT_ENTRIES=500", "RAFTKV_CATCH_UP_ENTRIES=100"}
	procs, dataDirs := serveCluster(t, env...)
	agreedLeader(t, procs...)
	ld := startLoad(t, redisAddrs(procs), 6)
	ld.answeredSinceNow(t, 20, "before the disk is lost")

	lost := procs[2]
	st, _ := lost.status()
	var peerAddr string
	for _, m := range st.Members {
		if m.Name == lost.name {
			peerAddr = m.Addr
		}
	}
	lost.kill()
	if err := os.RemoveAll(dataDirs[2]); err != nil {
		t.Fatal(err)
	}
	rest := procs[:2]
	leader, _ := agreedLeader(t, rest...)
	ld.answeredSinceNow(t, 20, "with "+lost.name+" gone")
	eventually(t, "the leader to compact its log", func() bool { return len(leader.records("snapshot taken")) > 0 })

	removeMember(t, rest, lost.name)
	waitMembers(t, rest, voters(rest))
	nn := newNode{name: lost.name, peer: peerAddr, http: lost.http, redis: lost.redis, dataDir: t.TempDir()}
	back := nn.join(t, rest[0], env...)
	procs = append(rest, back)
	waitMembers(t, procs, voters(procs))
	caughtUp(t, back, procs)
	if len(back.records("installed snapshot from the leader")) == 0 {
		t.Errorf("%s did not catch up from a snapshot", back.name)
	}
	ld.answeredSinceNow(t, 20, "after "+lost.name+" was replaced")
	ld.stop()

	ld.checkAcked(t, procs)
	ld.hist.check(t)
}
