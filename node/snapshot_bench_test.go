package node

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage"
	"github.com/raftkv/raftkv/transport"
)

var benchSnapshotMiB = flag.Int("snapshot-mib", 256, "size in MiB of the state BenchmarkSnapshot snapshots")

// BenchmarkSnapshot measures, in MB/s of snapshot data, for a key-value
// state of -snapshot-mib MiB (4 KiB values):
//
//	disk      write a plain file of that size in 1 MiB writes and fsync it:
//	          the disk's own speed, the ceiling for the others
//	create    what a node does in the background to take a snapshot: freeze
//	          the kv store (copy-on-write), stream it to a new snapshot file,
//	          fsync, install it and record it in the WAL
//	transfer  send that file to another node over loopback TCP, where it is
//	          verified, written, fsynced and staged: what a follower waits for
//
// The cases take turns under -count, so a noisy disk affects them alike.
func BenchmarkSnapshot(b *testing.B) {
	size := int64(*benchSnapshotMiB) << 20
	b.Run("disk", func(b *testing.B) { benchDiskWrite(b, size) })

	store := benchKVStore(b, size)
	sender := benchStorage(b)
	var last raftpb.SnapshotMetadata
	b.Run("create", func(b *testing.B) {
		n := &Node{store: sender, stats: new(stats), cfg: Config{StateMachine: nopMachine{}}, abortc: make(chan struct{})}
		var bytes int64
		for b.Loop() {
			last.Index++
			last.Term = 1
			written, err := n.saveSnapshot(snapJob{md: last, image: store.Checkpoint()})
			if err != nil {
				b.Fatal(err)
			}
			bytes = written
		}
		b.SetBytes(bytes)
	})
	b.Run("transfer", func(b *testing.B) {
		if last.Index == 0 {
			b.Skip("no snapshot to send: run create too")
		}
		benchTransfer(b, sender, last)
	})
}

func benchDiskWrite(b *testing.B, size int64) {
	buf := make([]byte, 1<<20)
	fillRandom(buf, 1)
	path := filepath.Join(b.TempDir(), "raw")
	b.SetBytes(size)
	for b.Loop() {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		for left := size; left > 0; left -= int64(len(buf)) {
			if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		if err := os.Remove(path); err != nil {
			b.Fatal(err)
		}
	}
}

func fillRandom(p []byte, seed uint64) {
	var s [32]byte
	s[0] = byte(seed)
	_, _ = rand.NewChaCha8(s).Read(p)
}

// benchKVStore returns a kv store holding about size bytes of 4 KiB values.
func benchKVStore(b *testing.B, size int64) *kv.Store {
	b.Helper()
	s := kv.New()
	value := make([]byte, 4<<10)
	var buf []byte
	for i := int64(0); i < size/int64(len(value)); i++ {
		fillRandom(value[:8], uint64(i)) // keep values distinct
		c := kv.Command{Op: kv.OpSet, Key: fmt.Appendf(nil, "key:%012d", i), Value: value}
		buf = c.MarshalAppend(buf[:0])
		if r := s.Apply(uint64(i+1), buf); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	return s
}

// benchStorage opens a Storage that fsyncs, as a node's does.
func benchStorage(b *testing.B) *storage.Storage {
	b.Helper()
	s, err := storage.Open(b.TempDir(), storage.Options{NodeID: 1, ClusterID: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// reportHandler hands the transport's snapshot reports to a channel.
type reportHandler struct{ reports chan bool }

func (h reportHandler) Deliver(raftpb.Message)           {}
func (h reportHandler) ReportUnreachable(uint64)         {}
func (h reportHandler) ReportSnapshot(_ uint64, ok bool) { h.reports <- ok }

func benchTransfer(b *testing.B, sender *storage.Storage, md raftpb.SnapshotMetadata) {
	receiver := benchStorage(b)
	quiet := slog.New(slog.DiscardHandler)
	start := func(id uint64, st *storage.Storage, h transport.Handler) *transport.Transport {
		tr, err := transport.New(transport.Config{ID: id, ClusterID: 1, ListenAddr: "127.0.0.1:0",
			Snapshots: snapshotFiles{st}, Logger: quiet}, h)
		if err != nil {
			b.Fatal(err)
		}
		if err := tr.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Close() })
		return tr
	}
	h := reportHandler{make(chan bool, 1)}
	from := start(1, sender, h)
	to := start(2, receiver, reportHandler{make(chan bool, 1)})
	from.AddPeer(2, to.Addr().String())
	to.AddPeer(1, from.Addr().String())
	r, err := sender.OpenSnapshot(md.Index, md.Term)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(r.Size())
	r.Close()
	for b.Loop() {
		from.Send([]raftpb.Message{{Type: raftpb.MsgSnap, From: 1, To: 2, Term: md.Term, Snapshot: &raftpb.Snapshot{Metadata: md}}})
		select {
		case ok := <-h.reports:
			if !ok {
				b.Fatal("the transfer failed")
			}
		case <-time.After(5 * time.Minute):
			b.Fatal("no report of the transfer")
		}
	}
}

// kvMachine runs a kv.Store as the node's state machine, as the server does.
type kvMachine struct{ s *kv.Store }

func (m kvMachine) Apply(index uint64, data []byte) any { return m.s.Apply(index, data) }
func (m kvMachine) Snapshot() (io.WriterTo, error)      { return m.s.Checkpoint(), nil }
func (m kvMachine) Restore(r io.Reader) error           { return m.s.Restore(r) }

// BenchmarkWriteLatencyDuringSnapshot measures the latency of small writes
// (64-byte SETs through the leader of three nodes, one after the other)
// with no snapshot going on, and while a snapshot of a -snapshot-mib MiB
// store is being taken by the leader and a follower and then sent to the
// third node, which was down while the others compacted their logs. It
// reports p50 and p99 of both; the goal is a p99 during the snapshot within
// twice the p99 without. One follower is down in both phases, so that they
// differ only by the snapshot.
func BenchmarkWriteLatencyDuringSnapshot(b *testing.B) {
	const valueSize = 4 << 20
	fill := *benchSnapshotMiB * (1 << 20) / valueSize
	const quiet = 2000
	for b.Loop() {
		// The snapshot comes due a little after the quiet phase: the
		// entries so far are the leader's empty one, the fill and the
		// quiet writes.
		c := newCluster(b, 3, func(cfg *Config) {
			cfg.SnapshotEntries = uint64(1 + fill + quiet + 50)
			cfg.CatchUpEntries = -1
			cfg.Logger = slog.New(slog.DiscardHandler)
		})
		for i := range 3 {
			c.startWith(i, kvMachine{kv.New()})
		}
		lead := c.leader()
		ln := c.nodes[lead]
		value := make([]byte, valueSize)
		for k := range fill {
			fillRandom(value[:64], uint64(k))
			cmd := kv.Command{Op: kv.OpSet, Key: fmt.Appendf(nil, "big:%06d", k), Value: value}
			mustPropose(b, ln, cmd.Marshal())
		}
		f := c.follower(lead)
		c.stop(f)

		small := make([]byte, 64)
		var seq int
		write := func() time.Duration {
			seq++
			cmd := kv.Command{Op: kv.OpSet, Key: fmt.Appendf(nil, "key:%06d", seq%100000), Value: small}
			start := time.Now()
			mustPropose(b, ln, cmd.Marshal())
			return time.Since(start)
		}
		var before, during []time.Duration
		for range quiet {
			before = append(before, write())
		}
		// Write on until the snapshot is taken, then restart the follower
		// and write until it has restored the snapshot sent to it.
		for ln.Stats().Snapshots.Taken == 0 {
			during = append(during, write())
		}
		c.startWith(f, kvMachine{kv.New()})
		fn := c.nodes[f]
		for fn.Stats().Snapshots.Restored == 0 {
			if err := fn.Err(); err != nil {
				b.Fatalf("the follower failed: %v", err)
			}
			during = append(during, write())
		}
		b.StopTimer()
		p := func(ds []time.Duration, q float64) float64 {
			ds = slices.Clone(ds)
			slices.Sort(ds)
			return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000
		}
		b.ReportMetric(p(before, 0.5), "p50-ms")
		b.ReportMetric(p(before, 0.99), "p99-ms")
		b.ReportMetric(p(during, 0.5), "snapshot-p50-ms")
		b.ReportMetric(p(during, 0.99), "snapshot-p99-ms")
		b.ReportMetric(float64(len(during)), "snapshot-writes")
		c.closeAll()
		b.StartTimer()
	}
}

// mustPropose proposes data through n and fails b if it is not applied.
func mustPropose(b *testing.B, n *Node, data []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := proposeWhenLed(ctx, n, string(data)); err != nil {
		b.Fatal(err)
	}
}
