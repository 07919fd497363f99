package node

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

// BenchmarkPropose measures one proposal's round trip through the leader of
// a 3-node loopback cluster: replicate, persist, commit, apply.
func BenchmarkPropose(b *testing.B) {
	benchPropose(b, 3, false)
}

// BenchmarkProposeParallel measures throughput with many concurrent
// proposers, which the loop batches into shared appends and fsyncs.
func BenchmarkProposeParallel(b *testing.B) {
	benchPropose(b, 3, true)
}

// BenchmarkProposeSingleNode is bounded by one fsync per proposal; it
// would show a loop that waits for a tick before committing its own write.
func BenchmarkProposeSingleNode(b *testing.B) {
	benchPropose(b, 1, false)
}

func benchPropose(b *testing.B, size int, parallel bool) {
	c := newCluster(b, size, func(cfg *Config) { cfg.Logger = slog.New(slog.DiscardHandler) })
	for i := range c.cfgs {
		c.cfgs[i].StateMachine = nopMachine{}
		n, err := Start(c.cfgs[i])
		if err != nil {
			b.Fatal(err)
		}
		c.nodes[i] = n
	}
	lead := c.leader()
	n := c.nodes[lead]
	data := make([]byte, 128)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for b.Loop() {
			if _, err := n.Propose(ctx, data); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := n.Propose(ctx, data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// nopMachine keeps the state machine's cost out of the measurement.
type nopMachine struct{}

func (nopMachine) Apply(index uint64, data []byte) any { return nil }
func (nopMachine) Snapshot(w io.Writer) error          { return nil }
func (nopMachine) Restore(r io.Reader) error           { return nil }
