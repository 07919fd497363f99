package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// benchEntryData is the payload of each benchmark entry: a small command,
// like a SET of a short key and value.
const benchEntryData = 128

// BenchmarkSave measures durable appends (fsync on) of batches of 1, 16
// and 256 entries: entries/s, and MB/s of WAL written. Its first case,
// raw-fsync, is the floor under them: one small append and fsync of a
// plain file in the same kind of directory. A Save costs one fsync however
// many entries it holds, so batch=1 should be close to raw-fsync. The cases
// take turns under -count, so a noisy disk affects them alike.
func BenchmarkSave(b *testing.B) {
	b.Run("raw-fsync", benchmarkFsync)
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{NodeID: 1, ClusterID: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			es := make([]raftpb.Entry, batch)
			data := make([]byte, benchEntryData)
			recordSize := int64(len(es[0].MarshalAppend(nil))) + 9 + benchEntryData
			b.SetBytes(recordSize * int64(batch))
			next := uint64(1)
			for b.Loop() {
				for k := range es {
					es[k] = raftpb.Entry{Index: next + uint64(k), Term: 1, Data: data}
				}
				if err := s.Save(raftpb.HardState{Term: 1, Vote: 1, Commit: next - 1}, es); err != nil {
					b.Fatal(err)
				}
				next += uint64(batch)
			}
			b.ReportMetric(float64(next-1)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// benchmarkFsync appends one record-sized write to a file and fsyncs it,
// with nothing else.
func benchmarkFsync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "fsync"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 9+benchEntryData+8)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
