package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNode is an httptest server that plays one raftkv node: it answers
// /v1/status with its name, role and leader, and hands every other request to
// handle, recording it.
type fakeNode struct {
	name   string
	handle func(w http.ResponseWriter, r *http.Request)
	srv    *httptest.Server

	mu     sync.Mutex // guards leader, term and reqs
	leader string
	term   uint64
	reqs   []string // "METHOD path?query id"
}

func newFakeNode(t *testing.T, name, leader string, handle func(w http.ResponseWriter, r *http.Request)) *fakeNode {
	f := &fakeNode{name: name, leader: leader, term: 2, handle: handle}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if r.URL.Path == "/v1/status" {
			role := "follower"
			if f.leader == f.name {
				role = "leader"
			}
			fmt.Fprintf(w, `{"name": %q, "role": %q, "leader": %q, "term": %d}`, f.name, role, f.leader, f.term)
			f.mu.Unlock()
			return
		}
		f.reqs = append(f.reqs, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Raftkv-Request-Id"))
		f.mu.Unlock()
		f.handle(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// elect makes the node see leader lead in term.
func (f *fakeNode) elect(leader string, term uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader, f.term = leader, term
}

func (f *fakeNode) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func ok(body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }
}

func unavailable(outcome string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"error": "no leader", "code": "unavailable", "outcome": %q}`, outcome)
	}
}

func newClient(t *testing.T, nodes []*fakeNode, opts ...Option) *Client {
	t.Helper()
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.srv.URL)
	}
	c, err := New(eps, append([]Option{WithBackoff(time.Millisecond, 5*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPrefersTheLeader(t *testing.T) {
	a := newFakeNode(t, "a", "b", ok("v"))
	b := newFakeNode(t, "b", "b", ok("v"))
	c := newClient(t, []*fakeNode{a, b})
	for range 3 {
		if v, err := c.Get(ctx(t), "k"); err != nil || string(v) != "v" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if len(a.requests()) != 0 || len(b.requests()) != 3 {
		t.Fatalf("requests to the follower %v, to the leader %v; want all to the leader", a.requests(), b.requests())
	}
}

// TestRetriesWithTheSameID: a write that meets 503s and a dead node is
// retried on the other nodes under one request id.
func TestRetriesWithTheSameID(t *testing.T) {
	var calls int
	var mu sync.Mutex
	flaky := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n < 3 {
			unavailable("not_applied")(w, r)
			return
		}
		io.WriteString(w, `{"written": true}`)
	}
	dead := newFakeNode(t, "dead", "none", ok(""))
	dead.srv.Close()
	a := newFakeNode(t, "a", "none", flaky)
	b := newFakeNode(t, "b", "none", flaky)
	c := newClient(t, []*fakeNode{dead, a, b})
	if r, err := c.Put(ctx(t), "k/1", []byte("v")); err != nil || !r.Written {
		t.Fatalf("Put = %+v, %v", r, err)
	}
	reqs := append(a.requests(), b.requests()...)
	if len(reqs) != 3 {
		t.Fatalf("requests %v; want 3", reqs)
	}
	for _, r := range reqs {
		if r != reqs[0] || !strings.HasPrefix(r, "PUT /v1/kv/k%2F1?encoding=base64 ") || !strings.HasSuffix(r, ":1") {
			t.Fatalf("requests %v; want the same PUT with one request id, seq 1", reqs)
		}
	}
	// The next write uses the same session with the next seq.
	if _, err := c.Put(ctx(t), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	id := func(r string) string { return r[strings.LastIndexByte(r, ' ')+1:] }
	client, _, _ := strings.Cut(id(reqs[0]), ":")
	for _, r := range append(a.requests(), b.requests()...) {
		if strings.HasPrefix(r, "PUT /v1/kv/k?") && id(r) != client+":2" {
			t.Fatalf("second write's id %s; want %s:2", id(r), client)
		}
	}
}

func TestGivesUp(t *testing.T) {
	for _, tc := range []struct {
		outcome string
		unknown bool
	}{{"not_applied", false}, {"unknown", true}} {
		a := newFakeNode(t, "a", "none", unavailable(tc.outcome))
		c := newClient(t, []*fakeNode{a}, WithTimeout(50*time.Millisecond))
		_, err := c.Incr(ctx(t), "n", 1)
		// A not_applied reply does not make the outcome known: the copy in
		// flight when the timeout struck may have been applied.
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || (tc.unknown && !errors.Is(err, ErrOutcomeUnknown)) {
			t.Errorf("outcome %s: Incr: %v; want ErrUnavailable, unknown outcome %v", tc.outcome, err, tc.unknown)
		}
		// Reads never have an unknown outcome.
		if _, err := c.Get(ctx(t), "n"); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("Get: %v; want ErrUnavailable", err)
		}
	}
}

func TestErrorReplies(t *testing.T) {
	a := newFakeNode(t, "a", "a", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "GET":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error": "key not found", "code": "not_found"}`)
		default:
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error": "value is not an integer or out of range", "code": "not_integer"}`)
		}
	})
	c := newClient(t, []*fakeNode{a})
	if _, err := c.Get(ctx(t), "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v; want ErrNotFound", err)
	}
	_, err := c.Incr(ctx(t), "k", 1)
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 409 || e.Code != "not_integer" || errors.Is(err, ErrNotFound) {
		t.Fatalf("Incr: %v; want the 409", err)
	}
	if want := "raftkv: value is not an integer or out of range (HTTP 409, not_integer)"; err.Error() != want {
		t.Fatalf("error text %q; want %q", err, want)
	}
	if len(a.requests()) != 2 {
		t.Fatalf("requests %v; errors other than 503 must not be retried", a.requests())
	}
}

// TestForgottenSession: the cluster forgot the client's idle session; the
// write was refused, so the client goes on under a new session.
func TestForgottenSession(t *testing.T) {
	var mu sync.Mutex
	first := true
	a := newFakeNode(t, "a", "a", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasSuffix(r.Header.Get("Raftkv-Request-Id"), ":2") && first {
			first = false
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error": "session expired", "code": "session_expired"}`)
			return
		}
		io.WriteString(w, `{"deleted": true}`)
	})
	c := newClient(t, []*fakeNode{a})
	for range 2 {
		if ok, err := c.Delete(ctx(t), "k"); err != nil || !ok {
			t.Fatalf("Delete = %v, %v", ok, err)
		}
	}
	reqs := a.requests()
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r[strings.LastIndexByte(r, ' ')+1:]
	}
	c1, _, _ := strings.Cut(ids[0], ":")
	c3, s3, _ := strings.Cut(ids[2], ":")
	if len(ids) != 3 || ids[1] != c1+":2" || c3 == c1 || s3 != "1" {
		t.Fatalf("request ids %v; want a:1 a:2 b:1", ids)
	}
}

func TestNew(t *testing.T) {
	for _, eps := range [][]string{nil, {"ftp://x"}, {"http://"}, {"::"}} {
		if _, err := New(eps); err == nil {
			t.Errorf("New(%q) succeeded", eps)
		}
	}
	c, err := New([]string{"127.0.0.1:1", "https://h:2/"})
	if err != nil || !slices.Equal(c.endpoints, []string{"http://127.0.0.1:1", "https://h:2"}) {
		t.Fatalf("New: %v, %v", c.endpoints, err)
	}
	if _, err := New([]string{"h:1"}, WithBackoff(time.Second, time.Millisecond)); err == nil {
		t.Fatal("New accepted a longest backoff below the first")
	}
}

// TestReplyTooLong: a reply longer than any node sends is refused, not
// read into memory whole.
func TestReplyTooLong(t *testing.T) {
	var sent, whole atomic.Int64 // replies begun, and replies the client read to the end
	a := newFakeNode(t, "a", "a", func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		chunk := strings.Repeat("v", 1<<20)
		for range 2 * maxReplyBytes >> 20 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		whole.Add(1)
	})
	c := newClient(t, []*fakeNode{a}, WithTimeout(2*time.Second))
	if _, err := c.Get(ctx(t), "k"); err == nil {
		t.Fatal("Get of an overlong reply succeeded")
	}
	if sent.Load() == 0 || whole.Load() != 0 {
		t.Fatalf("%d of %d overlong replies were read whole", whole.Load(), sent.Load())
	}
}
