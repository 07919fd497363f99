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

// BenchmarkReadIndex measures one linearizable read on the leader of a
// 3-node loopback cluster: a heartbeat round per read in safe mode, none
// while the leader holds a lease.
func BenchmarkReadIndex(b *testing.B) {
	for _, mode := range []struct {
		name  string
		lease bool
	}{{"safe", false}, {"lease", true}} {
		b.Run(mode.name, func(b *testing.B) {
			c := startNopCluster(b, 3, func(cfg *Config) { cfg.LeaseReads = mode.lease })
			n := c.nodes[c.leader()]
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := n.ReadIndex(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// startNopCluster starts size nodes applying to nopMachine, logging nothing.
func startNopCluster(b *testing.B, size int, tweak func(*Config)) *cluster {
	c := newCluster(b, size, func(cfg *Config) {
		cfg.Logger = slog.New(slog.DiscardHandler)
		if tweak != nil {
			tweak(cfg)
		}
	})
	for i := range c.cfgs {
		c.cfgs[i].StateMachine = nopMachine{}
		n, err := Start(c.cfgs[i])
		if err != nil {
			b.Fatal(err)
		}
		c.nodes[i] = n
	}
	return c
}

func benchPropose(b *testing.B, size int, parallel bool) {
	c := startNopCluster(b, size, nil)
	n := c.nodes[c.leader()]
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
func (nopMachine) Snapshot() (io.WriterTo, error)      { return nopMachine{}, nil }
func (nopMachine) WriteTo(io.Writer) (int64, error)    { return 0, nil }
func (nopMachine) Restore(r io.Reader) error           { return nil }
