package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testenv"
)

// syncBuffer is a bytes.Buffer a running node may log to while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serve runs "raftkv serve" for member name of cluster in this process
// until ctx ends, and returns where its exit code will be.
func serve(ctx context.Context, t *testing.T, logs io.Writer, name, cluster, redisAddr, httpAddr string) <-chan int {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"serve", "--id", name, "--cluster", cluster,
			"--data-dir", dir, "--redis-addr", redisAddr, "--http-addr", httpAddr,
			"--tick-interval", "10ms", "--log-format", "json"}, nil, &bytes.Buffer{}, logs, env(nil))
	}()
	return exited
}

// TestServeAndCommands runs "raftkv serve" as a one-node cluster in this
// process and the commands against it, then stops it as a signal does.
func TestServeAndCommands(t *testing.T) {
	addrs := testenv.FreeAddrs(t, 3)
	peer, redisAddr, httpAddr := addrs[0], addrs[1], addrs[2]
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs syncBuffer
	exited := serve(ctx, t, &logs, "solo", "solo="+peer, redisAddr, httpAddr)

	cmd := func(stdin string, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var o, e bytes.Buffer
		code = run(context.Background(), args, strings.NewReader(stdin), &o, &e, env(map[string]string{"RAFTKV_ENDPOINTS": httpAddr}))
		return code, o.String(), e.String()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	testenv.Eventually(t, "the node to become leader", func() bool {
		code, out, _ := cmd("", "status")
		return code == 0 && strings.Contains(out, "leader")
	})

	for _, c := range []struct {
		stdin      string
		args       []string
		code       int
		out, errIn string // errIn: in the one line on stderr
	}{
		{"", []string{"put", "k", "v"}, 0, "OK\n", ""},
		{"from stdin", []string{"put", "s"}, 0, "OK\n", ""},
		{"", []string{"get", "k"}, 0, "v\n", ""},
		{"", []string{"get", "s"}, 0, "from stdin\n", ""},
		{"", []string{"get", "k", "--output", "json"}, 0, "{\n  \"key\": \"k\",\n  \"value\": \"v\"\n}\n", ""},
		{"", []string{"put", "--output=json", "empty", ""}, 0, "{\n  \"key\": \"empty\",\n  \"written\": true\n}\n", ""},
		{"", []string{"get", "empty", "--output=json"}, 0, "{\n  \"key\": \"empty\",\n  \"value\": \"\"\n}\n", ""},
		{"\xff\x00", []string{"put", "bin"}, 0, "OK\n", ""},
		{"", []string{"get", "bin", "--output=json"}, 0, "{\n  \"key\": \"bin\",\n  \"value_base64\": \"/wA=\"\n}\n", ""},
		{"", []string{"del", "k"}, 0, "deleted\n", ""},
		{"", []string{"del", "k"}, 0, "not found, nothing deleted\n", ""},
		{"", []string{"get", "k"}, 1, "", `raftkv get: key "k" not found`},
		{"", []string{"get"}, 2, "", "usage: raftkv get KEY [flags], got 0 arguments"},
		{"", []string{"put", "a", "b", "c"}, 2, "", "usage: raftkv put KEY [VALUE] [flags], got 3"},
		{"", []string{"status", "--output", "yaml"}, 2, "", "want text or json"},
		{"", []string{"status", "--timeout", "0s"}, 2, "", "must be positive"},
		{"", []string{"get", "k", "--endpoints", "ftp://x"}, 2, "", "bad endpoint"},
		{"", []string{"get", "--bogus", "k"}, 2, "", "bogus"},
		{"", []string{"transfer-leader", "solo"}, 0, "solo leads\n", ""},
		{"", []string{"transfer-leader", "nobody"}, 1, "", `raftkv transfer-leader: "nobody" is not a member`},
		{"", []string{"transfer-leader"}, 2, "", "usage: raftkv transfer-leader NAME [flags], got 0"},
	} {
		code, out, stderr := cmd(c.stdin, c.args...)
		if code != c.code || out != c.out || (c.errIn == "") != (stderr == "") || !strings.Contains(stderr, c.errIn) || strings.Count(stderr, "\n") > 1 {
			t.Errorf("raftkv %q: got exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q", c.args, code, out, stderr, c.code, c.out, c.errIn)
		}
	}

	code, out, _ := cmd("", "status")
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(rows) != 2 || !strings.HasPrefix(rows[0], "NAME ") {
		t.Fatalf("status: exit %d, %q", code, out)
	}
	if f := strings.Fields(rows[1]); len(f) != 9 || f[0] != "solo" || f[2] != "leader" || f[4] != "solo" || f[7] != f[5] || f[8] != "0" {
		t.Errorf("status row %q: want solo leading itself with its match at the commit and no lag", rows[1])
	}
	code, out, _ = cmd("", "members", "--output", "json")
	var ms struct{ Members []struct{ Name, Addr string } }
	if err := json.Unmarshal([]byte(out), &ms); code != 0 || err != nil || len(ms.Members) != 1 || ms.Members[0].Addr != peer {
		t.Errorf("members --output json: exit %d, %q (%v)", code, out, err)
	}

	stop()
	select {
	case code := <-exited:
		if code != exitOK || !strings.Contains(logs.String(), "stopped cleanly") {
			t.Errorf("serve exited with %d after the signal, want 0 and a clean stop; logs:\n%s", code, logs.String())
		}
	case <-time.After(stopTimeout + 5*time.Second):
		t.Fatal("serve did not stop after the signal")
	}
}

// TestTransferLeader runs a three-node cluster in this process and moves
// its leadership to a follower with "raftkv transfer-leader".
func TestTransferLeader(t *testing.T) {
	addrs := testenv.FreeAddrs(t, 9)
	var cluster, https []string
	for i := range 3 {
		cluster = append(cluster, fmt.Sprintf("n%d=%s", i+1, addrs[i]))
		https = append(https, addrs[6+i])
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs syncBuffer
	var exits []<-chan int
	for i := range 3 {
		exits = append(exits, serve(ctx, t, &logs, fmt.Sprintf("n%d", i+1), strings.Join(cluster, ","), addrs[3+i], addrs[6+i]))
	}
	cmd := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var o, e bytes.Buffer
		code = run(context.Background(), args, nil, &o, &e, env(map[string]string{"RAFTKV_ENDPOINTS": strings.Join(https, ",")}))
		return code, o.String(), e.String()
	}
	// roles returns each node's role by name, once all three answer.
	roles := func() map[string]string {
		code, out, _ := cmd("status", "--output", "json")
		var answers []struct{ Status *struct{ Name, Role string } }
		if code != 0 || json.Unmarshal([]byte(out), &answers) != nil {
			return nil
		}
		m := make(map[string]string)
		for _, a := range answers {
			m[a.Status.Name] = a.Status.Role
		}
		return m
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	var follower string
	testenv.Eventually(t, "one leader and a follower among the three nodes", func() bool {
		leaders, candidate := 0, ""
		for name, role := range roles() {
			switch role {
			case "leader":
				leaders++
			case "follower":
				candidate = name
			}
		}
		if leaders == 1 {
			follower = candidate
		}
		return follower != ""
	})

	code, out, stderr := cmd("transfer-leader", follower, "--output", "json")
	if want := fmt.Sprintf("{\n  \"leader\": %q\n}\n", follower); code != 0 || out != want || stderr != "" {
		t.Fatalf("transfer-leader %s: exit %d, stdout %q, stderr %q; want 0 and %q", follower, code, out, stderr, want)
	}
	// It returned once the nodes of the newest term named the follower
	// leader, so the follower itself says so.
	if r := roles(); r[follower] != "leader" {
		t.Errorf("after transfer-leader %s: roles %v, want it to lead", follower, r)
	}
	if code, _, stderr := cmd("transfer-leader", "n4"); code != 1 || !strings.Contains(stderr, `"n4" is not a member`) {
		t.Errorf("transfer-leader n4: exit %d, stderr %q; want 1 and not a member", code, stderr)
	}

	stop()
	for i, exited := range exits {
		select {
		case code := <-exited:
			if code != exitOK {
				t.Errorf("n%d exited with %d, want 0; logs:\n%s", i+1, code, logs.String())
			}
		case <-time.After(stopTimeout + 5*time.Second):
			t.Fatalf("n%d did not stop", i+1)
		}
	}
}

// TestJoinAndMembers grows a one-node cluster with "raftkv serve --join",
// which the leader promotes once it caught up, changes the membership with
// "raftkv members", and checks the refusals: a change the cluster refuses
// exits 1; a data directory of another cluster given --join exits 2.
func TestJoinAndMembers(t *testing.T) {
	addrs := testenv.FreeAddrs(t, 6)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	soloExit := serve(ctx, t, &logs, "solo", "solo="+addrs[0], addrs[1], addrs[2])
	cmd := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var o, e bytes.Buffer
		code = run(context.Background(), args, nil, &o, &e, env(map[string]string{"RAFTKV_ENDPOINTS": addrs[2]}))
		return code, o.String(), e.String()
	}
	members := func() map[string]string {
		code, out, _ := cmd("members", "list", "--output", "json")
		var m struct{ Members []struct{ Name, Role string } }
		if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
			return nil
		}
		roles := make(map[string]string)
		for _, mb := range m.Members {
			roles[mb.Name] = mb.Role
		}
		return roles
	}
	testenv.Eventually(t, "solo to lead", func() bool { return members()["solo"] == "voter" })

	joinDir := filepath.Join(t.TempDir(), "n2")
	joinArgs := []string{"serve", "--id", "n2", "--peer-addr", addrs[3], "--data-dir", joinDir, "--join", "http://" + addrs[2],
		"--http-addr", addrs[4], "--tick-interval", "10ms", "--log-format", "json"}
	joinExit := make(chan int, 1)
	go func() { joinExit <- run(ctx, joinArgs, nil, &bytes.Buffer{}, &logs, env(nil)) }()
	testenv.Eventually(t, "n2 to join and be promoted to voter", func() bool { return members()["n2"] == "voter" })

	code, out, stderr := cmd("members")
	if rows := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(rows) != 3 || !strings.HasPrefix(rows[0], "NAME ") || !strings.Contains(out, "voter (leader)") {
		t.Fatalf("members: exit %d, %q %q; want a table of two voters and the leader marked", code, out, stderr)
	}
	for _, c := range []struct {
		args  []string
		code  int
		errIn string
	}{
		{[]string{"members", "add", "n3", addrs[5], "--learner"}, 0, ""},
		{[]string{"members", "add", "n3", addrs[5]}, 1, "member exists"},
		{[]string{"members", "add", "n9", addrs[3]}, 1, "member exists"},
		{[]string{"members", "promote", "nobody"}, 1, `"nobody" is not a member`},
		{[]string{"members", "remove", "n3"}, 0, ""},
		{[]string{"members", "remove"}, 2, "usage: raftkv members remove NAME"},
		{[]string{"members", "frobnicate"}, 2, "want list, add, remove or promote"},
		{[]string{"members", "remove", "n3", "--learner"}, 2, "--learner goes with members add"},
	} {
		code, _, stderr := cmd(c.args...)
		if code != c.code || !strings.Contains(stderr, c.errIn) || strings.Count(stderr, "\n") > 1 {
			t.Errorf("raftkv %q: exit %d, stderr %q; want exit %d with %q", c.args, code, stderr, c.code, c.errIn)
		}
	}

	// Removing n2 stops it, cleanly.
	if code, _, stderr := cmd("members", "remove", "n2"); code != 0 {
		t.Fatalf("members remove n2: exit %d, %s", code, stderr)
	}
	select {
	case code := <-joinExit:
		if code != exitOK || !strings.Contains(logs.String(), "removed from the cluster") {
			t.Fatalf("removed n2 exited with %d, want 0 saying it was removed", code)
		}
	case <-time.After(testenv.WaitTimeout):
		t.Fatal("removed n2 did not stop")
	}

	// n2's data directory belongs to solo's cluster: --join to another
	// cluster is refused.
	other := testenv.FreeAddrs(t, 3)
	otherExit := serve(ctx, t, &logs, "other", "other="+other[0], other[1], other[2])
	testenv.Eventually(t, "the other cluster to answer", func() bool {
		code, _, _ := cmd("members", "--endpoints", other[2])
		return code == 0
	})
	var e bytes.Buffer
	joinArgs[len(joinArgs)-7] = "http://" + other[2] // --join's value
	if code := run(ctx, joinArgs, nil, &bytes.Buffer{}, &e, env(nil)); code != exitStartup || !strings.Contains(e.String(), "another cluster") || strings.Count(e.String(), "\n") != 1 {
		t.Fatalf("--join to another cluster: exit %d, stderr %q; want 2 and one line", code, e.String())
	}
	stop()
	for _, exited := range []<-chan int{soloExit, otherExit} {
		if code := <-exited; code != exitOK {
			t.Errorf("a node exited with %d, want 0", code)
		}
	}
}
