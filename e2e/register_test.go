package e2e

import (
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/internal/register"
)

// history records operations from many goroutines, with times on the
// monotonic clock relative to its start.
type history struct {
	start time.Time

	mu  sync.Mutex // guards ops
	ops []porcupine.Operation
}

func newHistory() *history { return &history{start: time.Now()} }

// now is a time to record as an operation's call or return.
func (h *history) now() int64 { return int64(time.Since(h.start)) }

// add records an operation that returned at ret.
func (h *history) add(client int, in register.Input, call int64, out register.Output, ret int64) {
	if out.Unknown {
		ret = math.MaxInt64
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// check fails t if the history is not linearizable, and leaves a
// visualization of it in a file it names.
func (h *history) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	pending := 0
	for _, op := range ops {
		if op.Output.(register.Output).Unknown {
			pending++
		}
	}
	model := register.Model()
	begin := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, ops, time.Minute)
	t.Logf("linearizability check of %d operations (%d with unknown outcome): %s in %v", len(ops), pending, res, time.Since(begin).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		f, err := os.CreateTemp("", "raftkv-history-*.html")
		if err != nil {
			t.Fatalf("history is not linearizable (and its visualization could not be saved: %v)", err)
		}
		defer f.Close()
		if err := porcupine.Visualize(model, info, f); err != nil {
			t.Fatalf("history is not linearizable (and its visualization could not be saved: %v)", err)
		}
		t.Fatalf("history is not linearizable; see %s", f.Name())
	case porcupine.Unknown:
		// The checker ran out of time without finding a violation.
		t.Log("NOTE: the linearizability check timed out without finding a violation")
	}
}
