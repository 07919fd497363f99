package node

import (
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
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
