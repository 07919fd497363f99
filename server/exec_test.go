package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testenv"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
)

// fakeNode applies proposals straight to a kv store, except that each
// Propose first consumes the next step of a script, which may fail it in
// the ways a real node does.
type fakeNode struct {
	mu        sync.Mutex // guards the fields below
	sm        *StateMachine
	index     uint64
	script    []proposeStep
	proposals []kv.RequestID
	done      chan struct{}
}

// proposeStep decides what one Propose does.
type proposeStep func(f *fakeNode, data []byte) (any, error)

// Steps of a script.
var (
	apply    proposeStep = func(f *fakeNode, data []byte) (any, error) { return f.applyLocked(data), nil }
	noLeader proposeStep = func(*fakeNode, []byte) (any, error) {
		return nil, fmt.Errorf("propose: %w", node.ErrNoLeader)
	}
	// lostReply applies the proposal but reports that the wait ended first,
	// as when a reply is lost in a leader change.
	lostReply proposeStep = func(f *fakeNode, data []byte) (any, error) {
		f.applyLocked(data)
		return nil, fmt.Errorf("propose: %w: %w", node.ErrOutcomeUnknown, context.DeadlineExceeded)
	}
	// lost drops the proposal after it reached raft.
	lost proposeStep = func(*fakeNode, []byte) (any, error) {
		return nil, fmt.Errorf("propose: %w: %w", node.ErrOutcomeUnknown, context.DeadlineExceeded)
	}
	forgotten proposeStep = func(*fakeNode, []byte) (any, error) { return kv.Result{Err: kv.ErrSessionExpired}, nil }
	stopped   proposeStep = func(*fakeNode, []byte) (any, error) { return nil, fmt.Errorf("propose: %w", node.ErrStopped) }
)

func (f *fakeNode) applyLocked(data []byte) any {
	f.index++
	return f.sm.Apply(f.index, data)
}

func (f *fakeNode) Propose(ctx context.Context, data []byte) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, err := kv.PeekRequestID(data)
	if err != nil {
		return nil, err
	}
	f.proposals = append(f.proposals, id)
	step := apply
	if len(f.script) > 0 {
		step, f.script = f.script[0], f.script[1:]
	}
	return step(f, data)
}

func (f *fakeNode) ReadIndex(ctx context.Context) error { return nil }
func (f *fakeNode) TransferLeadership(ctx context.Context, to uint64) error {
	return errors.New("not supported")
}
func (f *fakeNode) AddMember(context.Context, string, string, bool) (node.MemberState, error) {
	return node.MemberState{}, errors.New("not supported")
}
func (f *fakeNode) AddJoiner(context.Context, string, string) (node.MemberState, error) {
	return node.MemberState{}, errors.New("not supported")
}
func (f *fakeNode) RemoveMember(context.Context, uint64) error  { return errors.New("not supported") }
func (f *fakeNode) PromoteMember(context.Context, uint64) error { return errors.New("not supported") }
func (f *fakeNode) LeaderClientURL(context.Context) (string, error) {
	return "", errors.New("not supported")
}
func (f *fakeNode) Status() node.Status            { return node.Status{} }
func (f *fakeNode) StatusChanged() <-chan struct{} { return nil } // never changes
func (f *fakeNode) Stats() node.Stats              { return node.Stats{} }
func (f *fakeNode) Done() <-chan struct{}          { return f.done }

func (f *fakeNode) ids() []kv.RequestID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.proposals)
}

// newFakeServer returns a server over a fakeNode that follows script.
func newFakeServer(t *testing.T, script ...proposeStep) (*Server, *fakeNode) {
	t.Helper()
	f := &fakeNode{sm: NewStateMachine(kv.New()), script: script, done: make(chan struct{})}
	s, err := New(Config{
		HTTPAddr:     "127.0.0.1:0",
		Node:         f,
		StateMachine: f.sm,
		Logger:       testenv.Logger(t),
		Timeout:      100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, f
}

func incr(t *testing.T, s *Server) (kv.Result, error) {
	t.Helper()
	return s.write(testContext(t), &kv.Command{Op: kv.OpIncrBy, Key: []byte("n"), Delta: 1})
}

// TestWriteRetriesAreExactlyOnce: whatever happened to earlier copies, the
// server's retries carry the same request id, and kv applies it once.
func TestWriteRetriesAreExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []proposeStep
	}{
		{"no leader, then applied", []proposeStep{noLeader, noLeader, apply}},
		{"applied but the reply lost", []proposeStep{lostReply, apply}},
		{"lost, then applied", []proposeStep{lost, apply}},
		{"applied twice over", []proposeStep{lostReply, noLeader, lostReply, apply}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newFakeServer(t, tc.script...)
			res, err := incr(t, s)
			if err != nil || res.Err != nil || res.Int != 1 {
				t.Fatalf("INCR = %+v, %v; want 1", res, err)
			}
			ids := f.ids()
			if len(ids) != len(tc.script) {
				t.Fatalf("%d proposals; want %d", len(ids), len(tc.script))
			}
			for _, id := range ids {
				if id != ids[0] || id.ClientID == 0 || id.Seq != 1 {
					t.Fatalf("request ids %v; want one id, seq 1, for every copy", ids)
				}
			}
			// The next write reuses the session with the next seq.
			if res, err := incr(t, s); err != nil || res.Int != 2 {
				t.Fatalf("second INCR = %+v, %v; want 2", res, err)
			}
			if last := f.ids()[len(ids)]; last != (kv.RequestID{ClientID: ids[0].ClientID, Seq: 2}) {
				t.Fatalf("second write's id %v; want the same session, seq 2", last)
			}
		})
	}
}

func TestWriteUnavailable(t *testing.T) {
	forever := func(step proposeStep) []proposeStep {
		out := make([]proposeStep, 10000)
		for i := range out {
			out[i] = step
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		script  []proposeStep
		unknown bool
	}{
		{"never a leader", forever(noLeader), false},
		{"lost, then no leader", append([]proposeStep{lost}, forever(noLeader)...), true},
		{"stopped", []proposeStep{stopped}, false},
		{"lost, then stopped", []proposeStep{lost, stopped}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newFakeServer(t, tc.script...)
			_, err := incr(t, s)
			var ue *UnavailableError
			if !errors.As(err, &ue) || !ue.Write || ue.Unknown != tc.unknown {
				t.Fatalf("INCR: %#v; want UnavailableError with Unknown %v", err, tc.unknown)
			}
			// Nothing was applied here, whatever the error says.
			if got := s.store.Read(&kv.Command{Op: kv.OpGet, Key: []byte("n")}); got.Value.Found {
				t.Fatalf("n = %q after a failed write", got.Value.Data)
			}
		})
	}
}

// TestWriteForgottenSession: kv forgot the server's idle session. The
// request's only copy was refused, so the server starts a new session.
func TestWriteForgottenSession(t *testing.T) {
	s, f := newFakeServer(t, apply, forgotten, apply)
	if res, err := incr(t, s); err != nil || res.Int != 1 {
		t.Fatalf("INCR = %+v, %v", res, err)
	}
	if res, err := incr(t, s); err != nil || res.Int != 2 {
		t.Fatalf("INCR after the session was forgotten = %+v, %v; want 2", res, err)
	}
	ids := f.ids()
	if len(ids) != 3 || ids[1] != (kv.RequestID{ClientID: ids[0].ClientID, Seq: 2}) ||
		ids[2].ClientID == ids[0].ClientID || ids[2].Seq != 1 {
		t.Fatalf("request ids %v; want (a,1) (a,2) (b,1)", ids)
	}
}

// TestWriteForgottenSessionAfterRetry: when an earlier copy may have been
// applied, a forgotten session leaves the outcome unknown.
func TestWriteForgottenSessionAfterRetry(t *testing.T) {
	s, _ := newFakeServer(t, apply, lost, forgotten)
	incr(t, s)
	_, err := incr(t, s)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !ue.Unknown {
		t.Fatalf("INCR: %v; want an unknown outcome", err)
	}
}

// TestWriteOwnIDForgottenAfterRetry: the same holds for a write under the
// client's own request id, which must not be answered as a plain
// session_expired that the client would take for "not applied".
func TestWriteOwnIDForgottenAfterRetry(t *testing.T) {
	s, _ := newFakeServer(t, lost, forgotten)
	c := &kv.Command{Op: kv.OpIncrBy, Key: []byte("n"), Delta: 1, ID: kv.RequestID{ClientID: 7, Seq: 3}}
	_, err := s.write(testContext(t), c)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !ue.Unknown {
		t.Fatalf("INCR: %v; want an unknown outcome", err)
	}
	// A single copy refused is a definite answer for the client to act on.
	s, _ = newFakeServer(t, forgotten)
	if res, err := s.write(testContext(t), c); err != nil || res.Err != kv.ErrSessionExpired {
		t.Fatalf("INCR = %+v, %v; want ErrSessionExpired", res, err)
	}
}

// TestWriteSessionsBound: with one session, concurrent writes take turns,
// and all are applied.
func TestWriteSessionsBound(t *testing.T) {
	f := &fakeNode{sm: NewStateMachine(kv.New()), done: make(chan struct{})}
	s, err := New(Config{HTTPAddr: "127.0.0.1:0", Node: f, StateMachine: f.sm, Logger: testenv.Logger(t), Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := incr(t, s); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ids := f.ids()
	for i, id := range ids {
		if id != (kv.RequestID{ClientID: ids[0].ClientID, Seq: uint64(i + 1)}) {
			t.Fatalf("request ids %v; want one session with seqs 1..20", ids)
		}
	}
	if got := s.store.Read(&kv.Command{Op: kv.OpGet, Key: []byte("n")}); string(got.Value.Data) != "20" {
		t.Fatalf("n = %q; want 20", got.Value.Data)
	}
}

func TestServerLifecycle(t *testing.T) {
	f := &fakeNode{sm: NewStateMachine(kv.New()), done: make(chan struct{})}
	cfg := Config{RedisAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Node: f, StateMachine: f.sm, Logger: testenv.Logger(t)}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The ports are bound: a second server on them fails in New.
	busy := cfg
	busy.RedisAddr = s.RedisAddr()
	if _, err := New(busy); err == nil {
		t.Fatal("New on a busy RESP port succeeded")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	r := dialRaw(t, s.RedisAddr())
	r.send("SET k v\r\n")
	r.expect("+OK\r\n")
	// Shutdown closes the idle connection and returns.
	if err := s.Shutdown(testContext(t)); err != nil {
		t.Fatal(err)
	}
	r.expectClosed()
	if err := s.Shutdown(testContext(t)); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after Shutdown: %v", err)
	}
	if err := s.Start(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Start after Close: %v; want ErrServerClosed", err)
	}
	// A server closed before it started releases its ports.
	s2, err := New(Config{RedisAddr: s.RedisAddr(), HTTPAddr: s.HTTPAddr(), Node: f, StateMachine: f.sm, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatalf("New on the ports of a closed server: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestShutdownWaitsForPipeline: Shutdown lets a connection finish the
// pipeline it is executing before it closes it.
func TestShutdownWaitsForPipeline(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{})
	f := &fakeNode{sm: NewStateMachine(kv.New()), done: make(chan struct{}), script: []proposeStep{
		func(f *fakeNode, data []byte) (any, error) {
			close(entered)
			<-block
			return f.applyLocked(data), nil
		},
	}}
	s, err := New(Config{RedisAddr: "127.0.0.1:0", Node: f, StateMachine: f.sm, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, s.RedisAddr())
	r.send("SET k v\r\nGET k\r\n")
	<-entered
	done := make(chan error)
	go func() { done <- s.Shutdown(testContext(t)) }()
	// New connections are refused while the pipeline runs.
	eventually(t, "the listener to close", func() bool {
		s.resp.mu.Lock()
		defer s.resp.mu.Unlock()
		return s.resp.closing
	})
	close(block)
	r.expect("+OK\r\n$1\r\nv\r\n")
	r.expectClosed()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
