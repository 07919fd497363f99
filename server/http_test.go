package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testenv"
	"github.com/raftkv/raftkv/kv"
)

// httpDo sends one request to srv and returns the status, the headers and
// the body.
func httpDo(t *testing.T, srv *Server, method, path string, body []byte, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, "http://"+srv.HTTPAddr()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// httpCase is one request and what its reply must be: the status, and a
// body that is wantBody exactly or, if wantJSON is set, JSON equal to it.
type httpCase struct {
	method, path string
	body         string
	header       []string
	status       int
	wantBody     string
	wantJSON     string
}

func runHTTP(t *testing.T, srv *Server, cases []httpCase) {
	t.Helper()
	for _, tc := range cases {
		status, _, body := httpDo(t, srv, tc.method, tc.path, []byte(tc.body), tc.header...)
		if status != tc.status {
			t.Errorf("%s %s: status %d (%s); want %d", tc.method, tc.path, status, body, tc.status)
			continue
		}
		switch {
		case tc.wantJSON != "":
			var got, want any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Errorf("%s %s: body %q is not JSON: %v", tc.method, tc.path, body, err)
				continue
			}
			if err := json.Unmarshal([]byte(tc.wantJSON), &want); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s %s: got %s; want %s", tc.method, tc.path, body, tc.wantJSON)
			}
		case string(body) != tc.wantBody:
			t.Errorf("%s %s: got %q; want %q", tc.method, tc.path, body, tc.wantBody)
		}
	}
}

func TestHTTPKV(t *testing.T) {
	c := newCluster(t, nil)
	lead := c.leader()
	f := c.srvs[c.followers(lead)[0]]
	runHTTP(t, f, []httpCase{
		{method: "GET", path: "/v1/kv/k", status: 404, wantJSON: `{"error": "key not found", "code": "not_found"}`},
		{method: "PUT", path: "/v1/kv/k", body: "v1", status: 200, wantJSON: `{"written": true}`},
		{method: "GET", path: "/v1/kv/k", status: 200, wantBody: "v1"},
		{method: "HEAD", path: "/v1/kv/k", status: 200},
		{method: "GET", path: "/v1/kv/k?consistency=stale", status: 200, wantBody: "v1"},
		{method: "PUT", path: "/v1/kv/k?nx", body: "v2", status: 200, wantJSON: `{"written": false}`},
		{method: "PUT", path: "/v1/kv/k?xx&prev", body: "v2", status: 200, wantJSON: `{"written": true, "prev": "v1", "prev_found": true}`},
		{method: "PUT", path: "/v1/kv/fresh?prev=true", body: "x", status: 200, wantJSON: `{"written": true, "prev": "", "prev_found": false}`},
		{method: "PUT", path: "/v1/kv/k?prev&encoding=base64", body: "v3", status: 200, wantJSON: `{"written": true, "prev": "djI=", "prev_found": true}`},
		{method: "PUT", path: "/v1/kv/k?nx&xx", status: 400, wantJSON: `{"error": "nx and xx exclude each other", "code": "bad_request"}`},
		{method: "PUT", path: "/v1/kv/k?cas=v3", body: "v4", status: 200, wantJSON: `{"swapped": true}`},
		{method: "PUT", path: "/v1/kv/k?cas=v3", body: "v5", status: 200, wantJSON: `{"swapped": false}`},
		{method: "PUT", path: "/v1/kv/missing?cas=", body: "v", status: 200, wantJSON: `{"swapped": false}`},
		{method: "PUT", path: "/v1/kv/k?cas=v4&nx", body: "v", status: 400, wantJSON: `{"error": "cas takes no nx", "code": "bad_request"}`},
		{method: "GET", path: "/v1/kv/k", status: 200, wantBody: "v4"},
		{method: "POST", path: "/v1/kv/n/incr", status: 200, wantJSON: `{"value": 1}`},
		{method: "POST", path: "/v1/kv/n/incr?by=-11", status: 200, wantJSON: `{"value": -10}`},
		{method: "POST", path: "/v1/kv/n/incr?by=x", status: 400, wantJSON: `{"error": "by must be a 64-bit integer", "code": "bad_request"}`},
		{method: "POST", path: "/v1/kv/k/incr", status: 409, wantJSON: `{"error": "value is not an integer or out of range", "code": "not_integer"}`},
		{method: "POST", path: "/v1/kv/n/incr?by=-9223372036854775807", status: 409, wantJSON: `{"error": "increment or decrement would overflow", "code": "not_integer"}`},
		{method: "POST", path: "/v1/kv/k/append", body: "+", status: 200, wantJSON: `{"length": 3}`},
		{method: "POST", path: "/v1/kv/k", status: 404, wantJSON: `{"error": "POST takes /v1/kv/<key>/incr or /v1/kv/<key>/append", "code": "not_found"}`},
		{method: "DELETE", path: "/v1/kv/k", status: 200, wantJSON: `{"deleted": true}`},
		{method: "DELETE", path: "/v1/kv/k", status: 200, wantJSON: `{"deleted": false}`},
		{method: "GET", path: "/v1/kv/k", status: 404, wantJSON: `{"error": "key not found", "code": "not_found"}`},
		// Keys with slashes, dots and escapes are taken as they are.
		{method: "PUT", path: "/v1/kv/a//b/../c", body: "1", status: 200, wantJSON: `{"written": true}`},
		{method: "GET", path: "/v1/kv/a%2F%2Fb%2F..%2Fc", status: 200, wantBody: "1"},
		{method: "PUT", path: "/v1/kv/sp%20ace%00", body: "2", status: 200, wantJSON: `{"written": true}`},
		{method: "GET", path: "/v1/kv/?prefix=sp", status: 200, wantJSON: `{"keys": ["sp ace\u0000"], "cursor": ""}`},
		{method: "GET", path: "/v1/kv/?prefix=sp&encoding=base64", status: 200, wantJSON: `{"keys": ["c3AgYWNlAA=="], "cursor": ""}`},
		// Bad input.
		{method: "GET", path: "/v1/kv/k?consistency=weird", status: 400, wantJSON: `{"error": "consistency must be linearizable or stale", "code": "bad_request"}`},
		{method: "GET", path: "/v1/kv/k?encoding=hex", status: 400, wantJSON: `{"error": "encoding must be utf-8 or base64", "code": "bad_request"}`},
		{method: "PUT", path: "/v1/kv/", body: "x", status: 400, wantJSON: `{"error": "missing key: use /v1/kv/<key>", "code": "bad_request"}`},
		{method: "PUT", path: "/v1/kv/k?nx=maybe", status: 400, wantJSON: `{"error": "nx must be true or false", "code": "bad_request"}`},
		{method: "PUT", path: "/v1/kv/k", header: []string{RequestIDHeader, "1:0"}, status: 400, wantJSON: `{"error": "Raftkv-Request-Id must be <client id>:<seq>, two positive decimal integers", "code": "bad_request"}`},
		{method: "PATCH", path: "/v1/kv/k", status: 405, wantJSON: `{"error": "method not allowed", "code": "bad_request"}`},
		{method: "GET", path: "/v1/kv/?limit=0", status: 400, wantJSON: `{"error": "limit must be a positive integer", "code": "bad_request"}`},
		{method: "GET", path: "/v1/kv/?cursor=***", status: 400, wantJSON: `{"error": "cursor is not one this API returned", "code": "bad_request"}`},
	})
}

func TestHTTPLimits(t *testing.T) {
	c := newCluster(t, slowWrites)
	srv := c.srvs[0]
	tooLarge := `{"error": "string exceeds maximum allowed size (8388608 bytes)", "code": "too_large"}`
	big := strings.Repeat("v", kv.MaxValueSize+1)
	bigKey := strings.Repeat("k", kv.MaxKeySize+1)
	runHTTP(t, srv, []httpCase{
		{method: "PUT", path: "/v1/kv/k", body: big, status: 413, wantJSON: tooLarge},
		{method: "POST", path: "/v1/kv/k/append", body: big, status: 413, wantJSON: tooLarge},
		{method: "PUT", path: "/v1/kv/k?cas=x", body: big, status: 413, wantJSON: tooLarge},
		{method: "GET", path: "/v1/kv/" + bigKey, status: 413, wantJSON: `{"error": "key exceeds maximum allowed size (65536 bytes)", "code": "too_large"}`},
	})
	// A body without a Content-Length is cut off at the limit too.
	req, _ := http.NewRequestWithContext(testContext(t), "PUT", "http://"+srv.HTTPAddr()+"/v1/kv/k", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked PUT above the limit: status %d; want 413", resp.StatusCode)
	}
	if testing.Short() {
		return // 8 MiB through raft takes seconds under the race detector
	}
	runHTTP(t, srv, []httpCase{
		{method: "PUT", path: "/v1/kv/k", body: big[:kv.MaxValueSize], status: 200, wantJSON: `{"written": true}`},
		{method: "POST", path: "/v1/kv/k/append", body: "x", status: 413, wantJSON: tooLarge},
	})
}

// TestHTTPRequestID sends a write twice with the same request id, as a
// client retrying after a lost reply does: it is applied once, and the
// repeat gets the first reply.
func TestHTTPRequestID(t *testing.T) {
	c := newCluster(t, nil)
	id := []string{RequestIDHeader, "77:1"}
	runHTTP(t, c.srvs[0], []httpCase{
		{method: "POST", path: "/v1/kv/n/incr?by=5", header: id, status: 200, wantJSON: `{"value": 5}`},
	})
	// The retry goes to another node, as the client's failover does.
	runHTTP(t, c.srvs[1], []httpCase{
		{method: "POST", path: "/v1/kv/n/incr?by=5", header: id, status: 200, wantJSON: `{"value": 5}`},
		{method: "GET", path: "/v1/kv/n", status: 200, wantBody: "5"},
		{method: "POST", path: "/v1/kv/n/incr?by=5", header: []string{RequestIDHeader, "77:2"}, status: 200, wantJSON: `{"value": 10}`},
		{method: "POST", path: "/v1/kv/n/incr?by=5", header: id, status: 409, wantJSON: `{"error": "request too old: a newer request from this client was already applied", "code": "request_too_old"}`},
	})
}

func TestHTTPListPages(t *testing.T) {
	c := newCluster(t, nil)
	ctx := testContext(t)
	var want []string
	for i := range 45 {
		k := fmt.Sprintf("dir/%02d", i)
		want = append(want, k)
		if _, err := c.client.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.client.Put(ctx, "other", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, stale := range []bool{false, true} {
		var got []string
		opts := client.ListOptions{Prefix: "dir/", Limit: 10, Stale: stale}
		for pages := 0; ; pages++ {
			p, err := c.client.List(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, p.Keys...)
			if p.Cursor == "" {
				break
			}
			if pages > 10 {
				t.Fatal("listing does not end")
			}
			opts.Cursor = p.Cursor
		}
		if !stale && !slices.Equal(got, want) {
			t.Fatalf("listing dir/ = %v; want %v", got, want)
		}
	}
	p, err := c.client.List(ctx, client.ListOptions{})
	if err != nil || len(p.Keys) != 46 || p.Cursor != "" {
		t.Fatalf("listing everything: %d keys, cursor %q, %v; want 46 keys in one page", len(p.Keys), p.Cursor, err)
	}
}

// TestHTTPClient exercises every client call against the cluster, with a
// dead endpoint first in the list so that the client has to move on.
func TestHTTPClient(t *testing.T) {
	c := newCluster(t, nil)
	ctx := testContext(t)
	eps := []string{freeAddr(t)} // nothing listens there
	for _, s := range c.srvs {
		eps = append(eps, "http://"+s.HTTPAddr()+"/")
	}
	cl, err := client.New(eps)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	if _, err := cl.Get(ctx, "k"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get missing: %v; want ErrNotFound", err)
	}
	key := "odd/key with spaces & ?"
	if r, err := cl.Put(ctx, key, []byte{0, 1, 2}); err != nil || !r.Written {
		t.Fatalf("Put: %+v, %v", r, err)
	}
	if v, err := cl.Get(ctx, key); err != nil || !bytes.Equal(v, []byte{0, 1, 2}) {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if v, err := cl.Get(ctx, key, client.Stale()); err != nil || !bytes.Equal(v, []byte{0, 1, 2}) {
		t.Fatalf("stale Get = %q, %v", v, err)
	}
	if r, err := cl.Put(ctx, key, []byte("new"), client.IfPresent(), client.ReturnPrevious()); err != nil || !r.Written || !r.PrevFound || !bytes.Equal(r.Prev, []byte{0, 1, 2}) {
		t.Fatalf("Put IfPresent ReturnPrevious: %+v, %v", r, err)
	}
	if r, err := cl.Put(ctx, key, []byte("newer"), client.IfAbsent()); err != nil || r.Written {
		t.Fatalf("Put IfAbsent on an existing key: %+v, %v", r, err)
	}
	if ok, err := cl.CAS(ctx, key, []byte("new"), []byte("swapped")); err != nil || !ok {
		t.Fatalf("CAS: %v, %v", ok, err)
	}
	if ok, err := cl.CAS(ctx, key, []byte("new"), []byte("again")); err != nil || ok {
		t.Fatalf("CAS with a stale expectation: %v, %v", ok, err)
	}
	if n, err := cl.Incr(ctx, "n", 3); err != nil || n != 3 {
		t.Fatalf("Incr = %d, %v", n, err)
	}
	var ce *client.Error
	if _, err := cl.Incr(ctx, key, 1); !errors.As(err, &ce) || ce.StatusCode != 409 || ce.Code != "not_integer" {
		t.Fatalf("Incr of a string: %v; want a 409 not_integer", err)
	}
	p, err := cl.List(ctx, client.ListOptions{})
	if err != nil || !slices.Equal(p.Keys, []string{"n", key}) {
		t.Fatalf("List = %+v, %v", p, err)
	}
	if ok, err := cl.Delete(ctx, key); err != nil || !ok {
		t.Fatalf("Delete: %v, %v", ok, err)
	}
	if ok, err := cl.Delete(ctx, key); err != nil || ok {
		t.Fatalf("Delete again: %v, %v", ok, err)
	}
	sts, err := cl.Status(ctx)
	if err != nil || len(sts) != 4 || sts[0].Err == nil {
		t.Fatalf("Status: %+v, %v; want 4 answers, the first an error", sts, err)
	}
	lead := fmt.Sprintf("n%d", c.leader()+1)
	for i, ns := range sts[1:] {
		if ns.Err != nil || ns.Status.Name != fmt.Sprintf("n%d", i+1) || ns.Status.Leader != lead || len(ns.Status.Members) != 3 {
			t.Fatalf("status of node %d: %+v", i+1, ns)
		}
		if ns.Status.Name == lead && len(ns.Status.Progress) != 3 {
			t.Fatalf("the leader's status lacks progress: %+v", ns.Status)
		}
	}
}

func TestHTTPOps(t *testing.T) {
	c := newCluster(t, nil)
	ctx := testContext(t)
	lead := c.leader()
	if _, err := c.client.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// Metrics count requests of both APIs.
	if err := c.rdbs[lead].Get(ctx, "k").Err(); err != nil {
		t.Fatal(err)
	}
	srv := c.srvs[lead]
	for _, path := range []string{"/healthz", "/readyz", "/v1/status", "/metrics", "/"} {
		status, h, body := httpDo(t, srv, "GET", path, nil)
		if status != 200 {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
		switch path {
		case "/v1/status":
			var st StatusJSON
			if err := json.Unmarshal(body, &st); err != nil || st.Role != "leader" || st.Leader != st.Name || len(st.Progress) != 3 || st.Commit == 0 {
				t.Fatalf("status: %+v, %v", st, err)
			}
			if p := st.Progress[st.Name]; p.Lag != 0 || p.Match == 0 {
				t.Fatalf("the leader's own progress: %+v", p)
			}
		case "/readyz":
			var r ReadyJSON
			if err := json.Unmarshal(body, &r); err != nil || !r.Ready || r.Applied < r.Commit {
				t.Fatalf("readyz: %s", body)
			}
		case "/metrics":
			for _, name := range []string{
				"raftkv_proposals_total", "raftkv_applied_commands_total", "raftkv_elections_total",
				"raftkv_leader_changes_total", "raftkv_term", "raftkv_commit_index", "raftkv_applied_index",
				"raftkv_apply_lag_entries", "raftkv_is_leader 1", "raftkv_has_leader 1", "raftkv_keys 1",
				"raftkv_read_index_requests_total", "raftkv_sessions_in_use", "raftkv_resp_connected_clients",
				`raftkv_request_duration_seconds_bucket{api="resp",command="get",`,
				`raftkv_request_duration_seconds_count{api="http",command="put"}`,
				"go_goroutines", "process_cpu_seconds_total",
			} {
				if !bytes.Contains(body, []byte(name)) {
					t.Errorf("/metrics lacks %s", name)
				}
			}
		case "/":
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || !bytes.Contains(body, []byte(`fetch("/v1/status"`)) {
				t.Fatalf("dashboard: %s, %.100s", ct, body)
			}
		}
	}
	// Errors are counted by kind.
	httpDo(t, srv, "GET", "/v1/kv/missing", nil)
	httpDo(t, srv, "GET", "/v1/kv/?limit=-1", nil)
	_, _, body := httpDo(t, srv, "GET", "/metrics", nil)
	if want := `raftkv_request_errors_total{api="http",command="list",kind="client"} 1`; !bytes.Contains(body, []byte(want)) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// TestHTTPNoLeader checks the replies of a node that cannot reach a
// leader: 503 with Retry-After for linearizable requests, stale reads
// still served, not ready, but healthy.
func TestHTTPNoLeader(t *testing.T) {
	c := newCluster(t, func(cfg *Config) { cfg.Timeout = 200 * time.Millisecond })
	ctx := testContext(t)
	if _, err := c.client.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	srv := c.srvs[2]
	// Wait until node 3 applied the write, so the stale read below sees it.
	eventually(t, "node 3 to apply the write", func() bool {
		return c.srvs[2].store.Read(&kv.Command{Op: kv.OpGet, Key: []byte("k")}).Value.Found
	})
	c.stop(0)
	c.stop(1)
	eventually(t, "node 3 to lose its leader", func() bool { return c.nodes[2].Status().Lead == 0 })
	runHTTP(t, srv, []httpCase{
		{method: "PUT", path: "/v1/kv/k", body: "w", status: 503, wantJSON: `{"error": "no leader within 200ms: the write was not applied", "code": "unavailable", "outcome": "not_applied"}`},
		{method: "GET", path: "/v1/kv/k", status: 503, wantJSON: `{"error": "no leader within 200ms: could not confirm a linearizable read, nothing was changed", "code": "unavailable"}`},
		{method: "GET", path: "/v1/kv/k?consistency=stale", status: 200, wantBody: "v"},
		{method: "GET", path: "/readyz", status: 503, wantJSON: fmt.Sprintf(`{"ready": false, "reason": "no leader known", "leader": "none", "commit": %d, "applied": %d}`,
			c.nodes[2].Status().Commit, c.nodes[2].Status().Applied)},
		{method: "GET", path: "/healthz", status: 200, wantBody: "ok\n"},
	})
	_, h, _ := httpDo(t, srv, "GET", "/v1/kv/k", nil)
	if h.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	// A client with only this endpoint gives up when its context ends.
	cl, err := client.New([]string{srv.HTTPAddr()}, client.WithTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Put(ctx, "k", []byte("x")); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Put without a leader: %v; want ErrUnavailable", err)
	}
	if v, err := cl.Get(ctx, "k", client.Stale()); err != nil || string(v) != "v" {
		t.Fatalf("stale Get without a leader = %q, %v", v, err)
	}
}

func TestPathKey(t *testing.T) {
	for _, tc := range []struct {
		rest, want, err string
	}{
		{rest: "a%2Fb", want: "a/b"},
		{rest: "a/b", want: "a/b"},
		{rest: "%00%ff", want: "\x00\xff"},
		{rest: "%zz", err: `bad escape in key: invalid URL escape "%zz"`},
		{rest: "", err: "missing key: use /v1/kv/<key>"},
		{rest: strings.Repeat("k", kv.MaxKeySize+1), err: kv.ErrKeyTooLarge.Error()},
	} {
		got, err := pathKey(tc.rest)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("pathKey(%.20q) = %q, %v; want error %q", tc.rest, got, err, tc.err)
			}
		} else if err != nil || string(got) != tc.want {
			t.Errorf("pathKey(%.20q) = %q, %v; want %q", tc.rest, got, err, tc.want)
		}
	}
}

func TestHTTPMembersAndTransfer(t *testing.T) {
	c := newCluster(t, nil)
	lead := c.leader()
	fs := c.followers(lead)
	to, asked := fs[0], fs[1]
	status, _, body := httpDo(t, c.srvs[to], "GET", "/v1/members", nil)
	var m MembersJSON
	if err := json.Unmarshal(body, &m); status != 200 || err != nil || len(m.Members) != 3 || m.Members[0].Name != "n1" {
		t.Fatalf("members: %d %s", status, body)
	}
	name := fmt.Sprintf("n%d", to+1)
	// Asked of a follower for the other follower: the request travels to
	// the leader through raft, under the asked follower's name.
	runHTTP(t, c.srvs[asked], []httpCase{
		{method: "POST", path: "/v1/leader/transfer?to=" + name, status: 200, wantJSON: fmt.Sprintf(`{"leader": %q}`, name)},
		{method: "POST", path: "/v1/leader/transfer?to=nobody", status: 400, wantJSON: `{"error": "to must name a voter: ?to=<name>", "code": "bad_request"}`},
	})
	if got := c.leader(); got != to {
		t.Fatalf("leader after the transfer: n%d; want %s", got+1, name)
	}
}

// TestMetricsListedInTheIssue checks that /metrics has everything the
// issue asks for (proposals, commits, applies, elections, term, leader
// changes, WAL fsync latency histogram, apply lag, request latency by
// command), with values that some traffic must have moved.
func TestMetricsListedInTheIssue(t *testing.T) {
	c := newCluster(t, nil)
	ctx := testContext(t)
	for i, rdb := range c.rdbs {
		if err := rdb.Set(ctx, "k", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.Get(ctx, "k").Err(); err != nil {
			t.Fatal(err)
		}
	}
	var elections float64
	for i, srv := range c.srvs {
		_, _, body := httpDo(t, srv, "GET", "/metrics", nil)
		positive := []string{
			"raftkv_proposals_total",
			"raftkv_commit_index",
			"raftkv_applied_commands_total",
			"raftkv_term",
			"raftkv_leader_changes_total", // every node knows a leader
			"raftkv_wal_fsync_duration_seconds_count",
			"raftkv_wal_fsync_duration_seconds_sum",
			"raftkv_wal_entries_persisted_total",
			`raftkv_request_duration_seconds_count{api="resp",command="set"}`,
			`raftkv_request_duration_seconds_count{api="resp",command="get"}`,
		}
		for _, name := range positive {
			if v, ok := metricValue(body, name); !ok || v <= 0 {
				t.Errorf("node %d: /metrics has %s = %v (found: %v), want a positive value", i+1, name, v, ok)
			}
		}
		for _, name := range []string{
			"raftkv_apply_lag_entries",
			"raftkv_elections_total",
			"raftkv_snapshots_taken_total",
			"raftkv_snapshot_writing",
			`raftkv_snapshot_transfers_total{direction="send",result="ok"}`,
			`raftkv_snapshot_transfers_total{direction="receive",result="failed"}`,
			`raftkv_snapshot_transfer_bytes_total{direction="receive"}`,
			`raftkv_snapshot_transfers_in_flight{direction="send"}`,
			`raftkv_wal_fsync_duration_seconds_bucket{le="0.001"}`,
			`raftkv_wal_fsync_duration_seconds_bucket{le="+Inf"}`,
		} {
			if _, ok := metricValue(body, name); !ok {
				t.Errorf("node %d: /metrics lacks %s", i+1, name)
			}
		}
		v, _ := metricValue(body, "raftkv_elections_total")
		elections += v
	}
	if elections < 1 {
		t.Errorf("the nodes count %v elections in all, want at least the one that elected the leader", elections)
	}
}

// metricValue returns the value of the sample written as name (with its
// labels, if any) in a Prometheus text exposition.
func metricValue(body []byte, name string) (float64, bool) {
	for line := range strings.Lines(string(body)) {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// TestHTTPMaxClients: past MaxClients key-value requests in progress, one
// more is refused with 503 before its body is read, and served again once
// one ends.
func TestHTTPMaxClients(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{})
	f := &fakeNode{sm: NewStateMachine(kv.New()), done: make(chan struct{}), script: []proposeStep{
		func(f *fakeNode, data []byte) (any, error) {
			close(entered)
			<-block
			return f.applyLocked(data), nil
		},
	}}
	s, err := New(Config{HTTPAddr: "127.0.0.1:0", Node: f, StateMachine: f.sm, Logger: testenv.Logger(t), MaxClients: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan int)
	go func() {
		req, _ := http.NewRequestWithContext(testContext(t), "PUT", "http://"+s.HTTPAddr()+"/v1/kv/a", strings.NewReader("1"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-entered
	status, header, body := httpDo(t, s, "PUT", "/v1/kv/b", []byte("2"))
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") == "" || !strings.Contains(string(body), `"unavailable"`) {
		t.Fatalf("second PUT: %d %q; want 503 unavailable with Retry-After", status, body)
	}
	close(block)
	if status := <-first; status != http.StatusOK {
		t.Fatalf("first PUT: %d", status)
	}
	if status, _, body := httpDo(t, s, "PUT", "/v1/kv/b", []byte("2")); status != http.StatusOK {
		t.Fatalf("PUT once the first ended: %d %q", status, body)
	}
}
