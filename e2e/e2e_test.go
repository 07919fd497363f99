// Package e2e tests the raftkv binary as users run it: real processes, real
// sockets, real signals. The tests build the binary once (TestMain) and are
// skipped with -short.
package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// originalCluster starts three nodes in the original form, each in its own
// working directory (so each gets the default data directory), and returns
// them with the arguments that start each again.
func originalCluster(t *testing.T) (procs []*proc, args [][]string, dirs []string) {
	ports := freePorts(t, 6) // in one call, so all differ
	peers, https := ports[:3], ports[3:]
	for i := range 3 {
		a := []string{"--http-addr", https[i], "--log-format", "json"}
		for j := range 3 {
			a = append(a, peers[(i+j)%3]) // this node's address first, as in the original
		}
		args = append(args, a)
		dirs = append(dirs, t.TempDir())
		procs = append(procs, start(t, peers[i], dirs[i], https[i], nil, a...))
	}
	return procs, args, dirs
}

func TestOriginalFormLeaderSurvivesKill9(t *testing.T) {
	needBinary(t)
	procs, args, dirs := originalCluster(t)

	leader, term := agreedLeader(t, procs...)
	t.Logf("elected %s in term %d", leader.name, term)
	for i, p := range procs {
		want := filepath.Join("raftkv-data", strings.ReplaceAll(p.name, ":", "-"))
		if !strings.Contains(strings.Join(p.output(), "\n"), want) {
			t.Errorf("%s did not say it keeps its data in %s", p.name, want)
		}
		if _, err := os.Stat(filepath.Join(dirs[i], want)); err != nil {
			t.Errorf("%s: default data directory: %v", p.name, err)
		}
	}

	// kill -9 the leader: the others elect a new one.
	killed := leader
	killedIdx := indexOf(procs, killed)
	killedAt := time.Now()
	killed.kill()
	rest := without(procs, killed)
	newLeader, newTerm := agreedLeader(t, rest...)
	t.Logf("after kill -9 of %s, %s leads term %d; failover took %v", killed.name, newLeader.name, newTerm, time.Since(killedAt).Round(time.Millisecond))
	if newTerm <= term {
		t.Fatalf("new leader's term %d, want above the killed leader's %d", newTerm, term)
	}

	// The same command brings the killed node back: as a follower, with
	// the term and vote it had persisted.
	back := start(t, killed.name, dirs[killedIdx], killed.http, nil, args[killedIdx]...)
	var started map[string]any
	eventually(t, "the restarted node to log its restored state", func() bool {
		recs := back.records("node started")
		if len(recs) > 0 {
			started = recs[0]
		}
		return started != nil
	})
	restoredTerm := uint64(started["term"].(float64))
	restoredVote := started["vote"].(string)
	if started["new"] != false {
		t.Errorf("restarted node says it is new: %v", started)
	}
	if restoredTerm < term || (restoredTerm == term && restoredVote != killed.name) {
		t.Fatalf("restarted node restored term %d vote %s; it was leader of term %d, so want that term and a vote for itself (or a later term)", restoredTerm, restoredVote, term)
	}
	procs[killedIdx] = back
	eventually(t, "the restarted node to follow a leader", func() bool {
		st, ok := back.status()
		return ok && st.Role == "follower" && st.Leader != "none" && st.Leader != back.name
	})
	noteDisruption(t, "the restart", newLeader, newTerm, procs)

	// Every node printed status lines with the original's fields.
	eventually(t, "a status line from every node", func() bool {
		for _, p := range procs {
			if len(p.records("status")) == 0 {
				return false
			}
		}
		return true
	})
	for _, p := range procs {
		rec := p.records("status")[0]
		for _, k := range []string{"id", "role", "term", "leader", "vote", "commit", "applied"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("%s: status line %v lacks %s=", p.name, rec, k)
			}
		}
	}

	// SIGTERM: a clean stop, exit 0.
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		if code := p.wait(); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM, want 0", p.name, code)
		}
		if len(p.records("stopped cleanly")) == 0 {
			t.Errorf("%s did not log a clean stop", p.name)
		}
	}
}

// serveCluster starts three nodes with "raftkv serve", serving RESP and
// HTTP, with extraEnv in their environment (RAFTKV_<FLAG>=...), and returns
// them with their data directories.
func serveCluster(t *testing.T, extraEnv ...string) (procs []*proc, dataDirs []string) {
	ports := freePorts(t, 9) // in one call, so all differ
	peers, https, rediss := ports[:3], ports[3:6], ports[6:]
	var cluster []string
	for i, addr := range peers {
		cluster = append(cluster, fmt.Sprintf("n%d=%s", i+1, addr))
	}
	for i := range 3 {
		// Half the flags through the environment, as RAFTKV_<FLAG>.
		dataDirs = append(dataDirs, t.TempDir())
		env := []string{
			"RAFTKV_CLUSTER=" + strings.Join(cluster, ","),
			"RAFTKV_LOG_FORMAT=json",
			"RAFTKV_DATA_DIR=" + dataDirs[i],
		}
		env = append(env, extraEnv...)
		p := start(t, fmt.Sprintf("n%d", i+1), t.TempDir(), https[i], env,
			"serve", "--id", fmt.Sprintf("n%d", i+1), "--http-addr", https[i], "--redis-addr", rediss[i])
		p.redis = rediss[i]
		procs = append(procs, p)
	}
	return procs, dataDirs
}

// restartServe starts p again from dataDir alone, on the same client
// addresses, logging JSON, with env in its environment.
func restartServe(t *testing.T, p *proc, dataDir string, env ...string) *proc {
	t.Helper()
	args := []string{"serve", "--data-dir", dataDir, "--http-addr", p.http, "--log-format", "json"}
	if p.redis != "" {
		args = append(args, "--redis-addr", p.redis)
	}
	back := start(t, p.name, t.TempDir(), p.http, env, args...)
	back.redis = p.redis
	return back
}

func TestPeerPortSurvivesGarbage(t *testing.T) {
	needBinary(t)
	procs, dataDirs := serveCluster(t)
	leader, term := agreedLeader(t, procs...)

	// Attack a follower, posing as the other follower where a sender is
	// needed, so the leader's own streams stay intact.
	followers := without(procs, leader)
	victim, posed := followers[0], followers[1]
	st, _ := victim.status()
	peerAddr, victimID, posedID := "", "", ""
	for _, m := range st.Members {
		switch m.Name {
		case victim.name:
			peerAddr, victimID = m.Addr, m.ID
		case posed.name:
			posedID = m.ID
		}
	}
	cluster := mustHexID(t, st.ClusterID)
	from, to := mustHexID(t, posedID), mustHexID(t, victimID)

	attacks := []struct {
		name string
		data []byte
	}{
		{"garbage", bytes.Repeat([]byte("GET / HTTP/1.1\r\n\x00\xff"), 200)},
		{"wrong cluster id", handshake(cluster+1, from, to)},
		{"unknown sender", handshake(cluster, 12345, to)},
		{"oversize frame", append(handshake(cluster, from, to), 0xff, 0xff, 0xff, 0xff)},
		{"frame then garbage", append(append(handshake(cluster, from, to), 0, 0, 0, 9), bytes.Repeat([]byte{0xee}, 9)...)},
	}
	for _, a := range attacks {
		conn, err := net.DialTimeout("tcp", peerAddr, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: dial %s: %v", a.name, peerAddr, err)
		}
		conn.SetDeadline(time.Now().Add(waitTimeout))
		conn.Write(a.data)
		// The node must close the connection rather than wait for more.
		if _, err := io.Copy(io.Discard, conn); err != nil && !isConnReset(err) {
			t.Errorf("%s: reading until the node closes the connection: %v", a.name, err)
		}
		conn.Close()
		if victim.exited() {
			t.Fatalf("%s: the node exited", a.name)
		}
	}

	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + victim.http + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after the attacks: %v %v", resp, err)
	}
	resp.Body.Close()
	// The cluster still works.
	noteDisruption(t, "the attacks", leader, term, procs)

	// A restart needs only the data directory: id and cluster are on disk.
	victim.cmd.Process.Signal(syscall.SIGTERM)
	if code := victim.wait(); code != 0 {
		t.Fatalf("%s exited with %d after SIGTERM, want 0", victim.name, code)
	}
	i := indexOf(procs, victim)
	procs[i] = start(t, victim.name, t.TempDir(), victim.http, nil, "serve", "--data-dir", dataDirs[i], "--http-addr", victim.http)
	noteDisruption(t, "a restart from the data directory alone", leader, term, procs)
}

// noteDisruption waits until every node agrees on a leader again after
// event, and logs it if leadership moved. With pre-vote and check-quorum
// it should not, but a starved machine (CI running every package at once)
// can delay heartbeats past an election timeout, which is not a bug.
func noteDisruption(t *testing.T, event string, leader *proc, term uint64, procs []*proc) {
	t.Helper()
	if l, tm := agreedLeader(t, procs...); l != leader || tm != term {
		t.Logf("NOTE: after %s %s leads term %d; before, %s led term %d", event, l.name, tm, leader.name, term)
	}
}

func TestStartupErrorsExit2WithOneLine(t *testing.T) {
	needBinary(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addrs := freePorts(t, 3)

	// A node that ran once, to have a data directory of another node. It
	// is a cluster of its own: founders wait for each other to start.
	used := t.TempDir()
	first := start(t, "first", t.TempDir(), "", nil, "--data-dir", used, "--log-format", "json", addrs[0])
	eventually(t, "the first node to start", func() bool { return len(first.records("node started")) > 0 })
	first.cmd.Process.Signal(syscall.SIGTERM)
	if code := first.wait(); code != 0 {
		t.Fatalf("first node exited with %d after SIGTERM, want 0", code)
	}

	cases := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"unknown flag", []string{"--bogus", addrs[0]}, "bogus"},
		{"bad address", []string{"not-an-address"}, "not-an-address"},
		{"no arguments", nil, "no listen address"},
		{"serve without data dir", []string{"serve", "--id", "n1", "--cluster", "n1=" + addrs[0]}, "--data-dir"},
		{"serve id not in cluster", []string{"serve", "--data-dir", t.TempDir(), "--id", "n9", "--cluster", "n1=" + addrs[0]}, "n9"},
		{"bad log format", []string{"--log-format", "xml", "--data-dir", t.TempDir(), addrs[0]}, "xml"},
		{"peer address in use", []string{"--data-dir", t.TempDir(), busy.Addr().String(), addrs[1]}, "in use"},
		{"http address in use", []string{"--data-dir", t.TempDir(), "--http-addr", busy.Addr().String(), addrs[0]}, "in use"},
		{"redis address in use", []string{"--data-dir", t.TempDir(), "--redis-addr", busy.Addr().String(), addrs[0]}, "in use"},
		{"bad read mode", []string{"--data-dir", t.TempDir(), "--read-mode", "fast", addrs[0]}, "--read-mode"},
		{"data dir of another node", []string{"--data-dir", used, addrs[1], addrs[0]}, "belongs to another node"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := start(t, c.name, t.TempDir(), "", nil, c.args...)
			if code := p.wait(); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
			out := p.output()
			if len(out) != 1 || !strings.Contains(out[0], c.want) {
				t.Fatalf("stderr %q, want one line mentioning %q", out, c.want)
			}
		})
	}
}

// handshake is a peer stream's opening as the transport documents it:
// "RKVT", version 1, then cluster, sender and receiver ids big-endian.
func handshake(cluster, from, to uint64) []byte {
	b := append([]byte("RKVT"), 1)
	b = binary.BigEndian.AppendUint64(b, cluster)
	b = binary.BigEndian.AppendUint64(b, from)
	return binary.BigEndian.AppendUint64(b, to)
}

func mustHexID(t *testing.T, s string) uint64 {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 8 {
		t.Fatalf("bad id %q in status: %v", s, err)
	}
	return binary.BigEndian.Uint64(b)
}

func indexOf(procs []*proc, p *proc) int {
	for i, q := range procs {
		if q == p {
			return i
		}
	}
	return -1
}

func without(procs []*proc, p *proc) []*proc {
	var out []*proc
	for _, q := range procs {
		if q != p {
			out = append(out, q)
		}
	}
	return out
}

// TestLeaderHandsOverOnSIGTERM: a leader told to stop first hands its
// leadership to a peer, so the cluster does not wait an election timeout.
func TestLeaderHandsOverOnSIGTERM(t *testing.T) {
	needBinary(t)
	procs, _ := serveCluster(t)
	leader, term := agreedLeader(t, procs...)
	leader.cmd.Process.Signal(syscall.SIGTERM)
	if code := leader.wait(); code != 0 {
		t.Fatalf("%s exited with %d after SIGTERM, want 0", leader.name, code)
	}
	recs := leader.records("handed leadership over")
	if len(recs) != 1 {
		t.Fatalf("%s did not log that it handed leadership over", leader.name)
	}
	to := recs[0]["to"]
	newLeader, newTerm := agreedLeader(t, without(procs, leader)...)
	if newLeader.name != to || newTerm != term+1 {
		t.Errorf("%s leads term %d; want %s, to whom %s handed leadership, in term %d", newLeader.name, newTerm, to, leader.name, term+1)
	}
	took, _ := recs[0]["took"].(float64) // nanoseconds
	t.Logf("%s handed leadership to %v in %v", leader.name, to, time.Duration(took))
}
