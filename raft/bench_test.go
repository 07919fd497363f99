package raft

import (
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// benchCluster is a 3-node in-memory cluster driven by a minimal runtime:
// each round runs one Ready per node and delivers every message.
type benchCluster struct {
	cores    [3]*Core
	storages [3]*MemoryStorage
	queue    []raftpb.Message
	next     []raftpb.Message
	applied  int
}

func newBenchCluster(b *testing.B) *benchCluster {
	b.Helper()
	bc := &benchCluster{}
	voters := []uint64{1, 2, 3}
	for i := range bc.cores {
		st := NewMemoryStorage()
		cfg := testConfig(uint64(i+1), voters, st)
		c, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		bc.cores[i], bc.storages[i] = c, st
	}
	_ = bc.cores[0].Campaign()
	for bc.round() {
	}
	if bc.cores[0].Status().Role != Leader {
		b.Fatal("no leader")
	}
	return bc
}

// round runs every node's Ready once and delivers what they sent. It
// reports whether anything happened.
func (bc *benchCluster) round() bool {
	moved := false
	for i, c := range bc.cores {
		if !c.HasReady() {
			continue
		}
		moved = true
		rd := c.Ready()
		bc.next = append(bc.next, rd.Messages...)
		_ = bc.storages[i].Append(rd.Entries)
		if !rd.HardState.IsEmpty() {
			_ = bc.storages[i].SetHardState(rd.HardState)
		}
		bc.next = append(bc.next, rd.MessagesAfterPersist...)
		if i == 0 {
			bc.applied += len(rd.CommittedEntries)
		}
		c.Advance(rd)
	}
	bc.queue, bc.next = bc.next, bc.queue[:0]
	for _, m := range bc.queue {
		_ = bc.cores[m.To-1].Step(m)
		moved = true
	}
	bc.queue = bc.queue[:0]
	return moved
}

// compact drops the entries every node has applied, so that memory stays
// flat over long runs.
func (bc *benchCluster) compact() {
	upTo := bc.cores[0].log.applied
	for _, c := range bc.cores {
		upTo = min(upTo, c.log.applied)
	}
	for _, st := range bc.storages {
		if upTo > st.offset() {
			_ = st.Compact(upTo)
		}
	}
}

func benchmarkPropose(b *testing.B, batch int) {
	bc := newBenchCluster(b)
	data := make([]byte, 128)
	leader := bc.cores[0]
	b.ReportAllocs()
	b.ResetTimer()
	proposed := 0
	for proposed < b.N {
		for range min(batch, b.N-proposed) {
			if err := leader.Propose(data); err != nil {
				b.Fatal(err)
			}
			proposed++
		}
		// Enough rounds to replicate and commit: leader Ready, followers'
		// acks, leader commits.
		for range 3 {
			bc.round()
		}
		if proposed%4096 < batch {
			bc.compact()
		}
	}
	for bc.round() {
	}
	b.StopTimer()
	if bc.applied < b.N {
		b.Fatalf("applied %d of %d proposals", bc.applied, b.N)
	}
}

// BenchmarkProposeBatched: 64 proposals per Ready, the way a busy runtime
// batches them. ns/op is per proposal.
func BenchmarkProposeBatched(b *testing.B) { benchmarkPropose(b, 64) }

// BenchmarkProposeUnbatched: every proposal gets its own Ready cycle.
func BenchmarkProposeUnbatched(b *testing.B) { benchmarkPropose(b, 1) }
