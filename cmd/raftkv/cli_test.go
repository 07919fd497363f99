package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// TestServeAndCommands runs "raftkv serve" as a one-node cluster in this
// process and the commands against it, then stops it as a signal does.
func TestServeAndCommands(t *testing.T) {
	addrs := freeAddrs(t, 3)
	peer, redisAddr, httpAddr := addrs[0], addrs[1], addrs[2]
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"serve", "--id", "solo", "--cluster", "solo=" + peer,
			"--data-dir", filepath.Join(t.TempDir(), "solo"), "--redis-addr", redisAddr, "--http-addr", httpAddr,
			"--tick-interval", "10ms", "--log-format", "json"}, nil, &bytes.Buffer{}, &logs, env(nil))
	}()

	cmd := func(stdin string, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var o, e bytes.Buffer
		code = run(context.Background(), args, strings.NewReader(stdin), &o, &e, env(map[string]string{"RAFTKV_ENDPOINTS": httpAddr}))
		return code, o.String(), e.String()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, _ := cmd("", "status")
		if code == 0 && strings.Contains(out, "leader") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not become leader: status %q, logs:\n%s", out, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

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
