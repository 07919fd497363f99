package readydrive

import (
	"errors"
	"fmt"
	"go/build"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
)

// fakeCore hands out one prepared Ready and records Advance.
type fakeCore struct {
	rd      raft.Ready
	pending bool
	log     *[]string
}

func (c *fakeCore) HasReady() bool { return c.pending }

func (c *fakeCore) Ready() raft.Ready {
	c.pending = false
	*c.log = append(*c.log, "ready")
	return c.rd
}

func (c *fakeCore) Advance(raft.Ready) { *c.log = append(*c.log, "advance") }

// recorder is a Runtime that logs each call and can fail one of them.
type recorder struct {
	log  *[]string
	fail string // "persist" or "apply": that call fails
}

func (r recorder) Send(msgs []raftpb.Message) {
	var names []string
	for _, m := range msgs {
		names = append(names, m.Type.String())
	}
	*r.log = append(*r.log, "send "+strings.Join(names, ","))
}

func (r recorder) Persist(*raft.Ready) error {
	*r.log = append(*r.log, "persist")
	if r.fail == "persist" {
		return errors.New("disk full")
	}
	return nil
}

func (r recorder) Apply(*raft.Ready) error {
	*r.log = append(*r.log, "apply")
	if r.fail == "apply" {
		return errors.New("stopping")
	}
	return nil
}

func newTest(fail string) (*Driver, *fakeCore, *[]string) {
	log := new([]string)
	core := &fakeCore{
		rd: raft.Ready{
			Messages:             []raftpb.Message{{Type: raftpb.MsgApp}},
			MessagesAfterPersist: []raftpb.Message{{Type: raftpb.MsgVoteResp}},
		},
		pending: true,
		log:     log,
	}
	return New(core, recorder{log: log, fail: fail}), core, log
}

func TestRunOrder(t *testing.T) {
	d, _, log := newTest("")
	if err := d.Run(); err != nil {
		t.Fatal(err)
	}
	want := []string{"ready", "send MsgApp", "persist", "send MsgVoteResp", "apply", "advance"}
	if !slices.Equal(*log, want) {
		t.Errorf("got %q, want %q", *log, want)
	}
	if d.Next() != Idle {
		t.Errorf("after Run: next phase %v, want idle", d.Next())
	}
	*log = nil
	if err := d.Run(); err != nil || len(*log) != 0 {
		t.Errorf("Run with no Ready: got %q, %v; want nothing done", *log, err)
	}
}

func TestHoldMessages(t *testing.T) {
	d, _, log := newTest("")
	if _, ok := d.Start(true); !ok {
		t.Fatal("Start: no Ready")
	}
	if err := d.RunUntil(Idle); err != nil {
		t.Fatal(err)
	}
	// Messages leave after the write, still before MessagesAfterPersist.
	want := []string{"ready", "persist", "send MsgApp", "send MsgVoteResp", "apply", "advance"}
	if !slices.Equal(*log, want) {
		t.Errorf("got %q, want %q", *log, want)
	}
}

// TestPhaseByPhase checks that a caller stepping through the phases sees
// each one named before it runs, and that the core may be given a new
// Ready meanwhile without the Driver taking it before Advance.
func TestPhaseByPhase(t *testing.T) {
	d, core, log := newTest("")
	rd, ok := d.Start(false)
	if !ok || len(rd.Messages) != 1 {
		t.Fatalf("Start: got %v, %v; want the core's Ready", rd, ok)
	}
	core.pending = true // inputs between phases made more work
	var phases []string
	for d.Next() != Idle {
		if _, ok := d.Start(false); ok {
			t.Fatalf("Start during %v took a second Ready before Advance", d.Next())
		}
		phases = append(phases, d.Next().String())
		if err := d.Step(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"send", "persist", "send after persisting", "apply", "advance"}
	if !slices.Equal(phases, want) {
		t.Errorf("phases: got %q, want %q", phases, want)
	}
	if _, ok := d.Start(false); !ok {
		t.Error("Start after Advance: no Ready, want the pending one")
	}
	if got := (*log)[len(*log)-1]; got != "ready" {
		t.Errorf("last call %q, want ready", got)
	}
}

// TestFailureDropsReady: a failed write or hand-off must not be followed by
// the messages that promise it, nor by Advance.
func TestFailureDropsReady(t *testing.T) {
	for _, tc := range []struct {
		fail string
		want []string
	}{
		{"persist", []string{"ready", "send MsgApp", "persist"}},
		{"apply", []string{"ready", "send MsgApp", "persist", "send MsgVoteResp", "apply"}},
	} {
		t.Run(tc.fail, func(t *testing.T) {
			d, _, log := newTest(tc.fail)
			if err := d.Run(); err == nil {
				t.Fatal("Run: got nil error, want the runtime's")
			}
			if !slices.Equal(*log, tc.want) {
				t.Errorf("got %q, want %q", *log, tc.want)
			}
			if d.Next() != Idle {
				t.Errorf("after a failure: next phase %v, want idle", d.Next())
			}
		})
	}
}

// TestRealCore runs a one-node core through the driver: its proposal is
// persisted before it is applied, and applied once.
func TestRealCore(t *testing.T) {
	st := raft.NewMemoryStorage()
	cfg := raft.DefaultConfig()
	cfg.ID, cfg.Voters, cfg.Storage = 1, []uint64{1}, st
	cfg.Rand = rand.New(rand.NewPCG(1, 2))
	core, err := raft.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt := &memRuntime{st: st}
	d := New(core, rt)
	if err := core.Campaign(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := d.Run(); err != nil {
			t.Fatal(err)
		}
	}
	if err := core.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := d.Run(); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(rt.applied); !strings.HasSuffix(got, " x]") {
		t.Errorf("applied %s, want the proposal last", got)
	}
}

// memRuntime persists to a MemoryStorage and checks that every applied
// entry is already durable.
type memRuntime struct {
	st      *raft.MemoryStorage
	applied []string
}

func (r *memRuntime) Send([]raftpb.Message) {}

func (r *memRuntime) Persist(rd *raft.Ready) error {
	if err := r.st.Append(rd.Entries); err != nil {
		return err
	}
	if !rd.HardState.IsEmpty() {
		return r.st.SetHardState(rd.HardState)
	}
	return nil
}

func (r *memRuntime) Apply(rd *raft.Ready) error {
	for _, e := range rd.CommittedEntries {
		if last, _ := r.st.LastIndex(); e.Index > last {
			return fmt.Errorf("applying %d before it is durable (last %d)", e.Index, last)
		}
		r.applied = append(r.applied, string(e.Data))
	}
	return nil
}

// TestImports keeps the driver usable by both the node runtime and the
// simulator, and as pure as the core: it may import raft and raftpb only
// (and the standard library's side-effect-free packages).
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"github.com/raftkv/raftkv/raft": true, "github.com/raftkv/raftkv/raft/raftpb": true}
	for _, imp := range pkg.Imports {
		if !allowed[imp] {
			t.Errorf("package readydrive imports %q; want raft and raftpb only", imp)
		}
	}
}
