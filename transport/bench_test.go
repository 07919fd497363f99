package transport

import (
	"sync/atomic"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// counter is a Handler that only counts deliveries, so the benchmark
// measures the transport rather than the recording.
type counter struct {
	n    atomic.Int64
	wake chan struct{} // size 1: a delivery happened since the last look
}

func (c *counter) Deliver(raftpb.Message) {
	c.n.Add(1)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
func (c *counter) ReportUnreachable(uint64)    {}
func (c *counter) ReportSnapshot(uint64, bool) {}

// BenchmarkLoopback measures messages per second and bytes per second from
// one transport to another over loopback TCP, for heartbeat-sized messages
// and for appends carrying one 4 KiB entry.
func BenchmarkLoopback(b *testing.B) {
	appendMsg := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, LogTerm: 3, Index: 100, Commit: 99,
		Entries: []raftpb.Entry{{Term: 3, Index: 101, Data: make([]byte, 4<<10)}}}
	for _, bc := range []struct {
		name string
		msg  raftpb.Message
	}{
		{"heartbeat", heartbeat(1, 2, 3)},
		{"append-4KiB", appendMsg},
	} {
		b.Run(bc.name, func(b *testing.B) { benchLoopback(b, bc.msg) })
	}
}

func benchLoopback(b *testing.B, m raftpb.Message) {
	const (
		queue  = 8192
		window = 2048 // messages in flight; well below the queue so none is dropped
		batch  = 64   // messages per Send, as a node loop hands over a Ready's worth
	)
	cfg := func(id uint64) Config {
		return Config{ID: id, ClusterID: testCluster, ListenAddr: "127.0.0.1:0", QueueSize: queue}
	}
	recv := &counter{wake: make(chan struct{}, 1)}
	rt := startTransport(b, cfg(2), recv)
	sc := cfg(1)
	sc.Peers = map[uint64]string{2: rt.Addr().String()}
	rt.AddPeer(1, "127.0.0.1:1") // admits node 1's stream; 2 never sends back
	st := startTransport(b, sc, &counter{wake: make(chan struct{}, 1)})

	// Warm up: the stream is up once one message gets through.
	eventually(b, "the first message", func() bool {
		st.Send([]raftpb.Message{m})
		return recv.n.Load() > 0
	})
	msgs := make([]raftpb.Message, batch)
	for i := range msgs {
		msgs[i] = m
	}
	enc, err := appendFrame(nil, &m, DefaultMaxFrameSize)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	base := recv.n.Load()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		if sent-int(recv.n.Load()-base) > window {
			<-recv.wake
			continue
		}
		k := min(batch, b.N-sent)
		st.Send(msgs[:k])
		sent += k
	}
	for recv.n.Load()-base < int64(b.N) {
		<-recv.wake
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if d := st.Stats()[2].Dropped; d != 0 {
		b.Fatalf("%d messages dropped", d)
	}
}
