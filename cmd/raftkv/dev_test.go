package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

func TestDevArgs(t *testing.T) {
	o, err := parseDevArgs(nil, &bytes.Buffer{}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.nodes != 3 || o.logLevel != "error" || o.dataDir != "" {
		t.Errorf("defaults: %d nodes, log level %q, data dir %q; want 3, error and a temporary one", o.nodes, o.logLevel, o.dataDir)
	}
	nodes := devNodes(o)
	if got := []string{nodes[0].peer, nodes[2].redis, nodes[1].http}; strings.Join(got, " ") != "127.0.0.1:7001 127.0.0.1:6383 127.0.0.1:8082" {
		t.Errorf("default addresses %q", got)
	}
	o, err = parseDevArgs([]string{"--nodes", "5", "--http-port", "9000", "--read-mode", "lease"}, &bytes.Buffer{}, env(map[string]string{"RAFTKV_DATA_DIR": "/d", "RAFTKV_TICK_INTERVAL": "20ms"}))
	if err != nil || o.nodes != 5 || o.httpPort != 9000 || o.dataDir != "/d" || o.tickInterval != 20*time.Millisecond {
		t.Errorf("flags and environment: %+v, %v", o, err)
	}
	if args := strings.Join(o.args(), " "); !strings.Contains(args, "--tick-interval 20ms") || !strings.Contains(args, "--log-level error") || !strings.Contains(args, "--read-mode lease") {
		t.Errorf("flags passed on to the nodes: %s", args)
	}
	for _, args := range [][]string{
		{"extra"},
		{"--nodes", "0"},
		{"--nodes", "10"},
		{"--peer-port", "65534"},
		{"--redis-port", "0"},
		{"--status-interval", "-1s"},
		{"--read-mode", "fast"},
	} {
		if _, err := parseDevArgs(args, &bytes.Buffer{}, env(nil)); err == nil {
			t.Errorf("parseDevArgs(%q) succeeded, want an error", args)
		}
	}
}

func TestChildEnv(t *testing.T) {
	got := childEnv([]string{"PATH=/bin", "RAFTKV_DATA_DIR=/d", "HOME=/h", "RAFTKV_ENDPOINTS=x"})
	if strings.Join(got, " ") != "PATH=/bin HOME=/h" {
		t.Errorf("got %q, want the environment without RAFTKV_ variables", got)
	}
}

func TestAgreedLeaderAndStatusLine(t *testing.T) {
	st := func(name, role, leader string, term uint64) client.NodeStatus {
		return client.NodeStatus{Endpoint: "http://" + name, Status: client.Status{Name: name, Role: role, Leader: leader, Term: term, Commit: 7, Applied: 6}}
	}
	down := client.NodeStatus{Endpoint: "http://127.0.0.1:8083", Err: errors.New("refused")}
	for _, c := range []struct {
		name string
		all  []client.NodeStatus
		ok   bool
	}{
		{"agreed", []client.NodeStatus{st("n1", "follower", "n2", 2), st("n2", "leader", "n2", 2)}, true},
		{"no leader yet", []client.NodeStatus{st("n1", "follower", "none", 1), st("n2", "candidate", "none", 1)}, false},
		{"other terms", []client.NodeStatus{st("n1", "follower", "n2", 1), st("n2", "leader", "n2", 2)}, false},
		{"leader not answering", []client.NodeStatus{st("n1", "follower", "n3", 2), st("n2", "follower", "n3", 2)}, false},
		{"a node down", []client.NodeStatus{st("n1", "leader", "n1", 2), down}, false},
		{"nobody", nil, false},
	} {
		leader, term, ok := agreedLeader(c.all)
		if ok != c.ok || (ok && (leader != "n2" || term != 2)) {
			t.Errorf("%s: got %s %d %v, want ok=%v", c.name, leader, term, ok, c.ok)
		}
	}
	nodes := []*devNode{{name: "n1"}, {name: "n2"}}
	line := statusLine(time.Date(2030, 1, 1, 12, 34, 56, 0, time.UTC), nodes, []client.NodeStatus{st("n1", "leader", "n1", 3), down})
	if want := "12:34:56  n1 leader term 3 commit 7 applied 6 | n2 down\n"; line != want {
		t.Errorf("status line %q, want %q", line, want)
	}
}

func TestPrefixer(t *testing.T) {
	var out bytes.Buffer
	p := &prefixer{w: &out, prefix: []byte("n1 | ")}
	p.Write([]byte("one\ntw"))
	p.Write([]byte("o\nthree"))
	if out.String() != "n1 | one\nn1 | two\n" {
		t.Errorf("got %q, want whole lines only", out.String())
	}
	p.flush()
	if !strings.HasSuffix(out.String(), "n1 | three\n") {
		t.Errorf("flush: got %q, want the last line ended", out.String())
	}
	out.Reset()
	p.Write(bytes.Repeat([]byte("x"), maxLine+10))
	if got := out.Len(); got != len("n1 | ")+maxLine+1 {
		t.Errorf("a line longer than %d bytes: wrote %d bytes, want its first %d as a line", maxLine, got, maxLine)
	}
}
