package kv

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// The workload of `redis-benchmark -t set,get -d 256 -r 10000`: 256-byte
// values over 10000 keys, written by 64 clients with request ids.
const (
	benchKeys    = 10000
	benchValue   = 256
	benchClients = 64
)

func benchKey(i int) []byte { return fmt.Appendf(nil, "key:%012d", i%benchKeys) }

func filledStore(b *testing.B) *Store {
	b.Helper()
	s := New()
	v := bytes.Repeat([]byte("x"), benchValue)
	for i := range benchKeys {
		applyNext(b, s, Command{Op: OpSet, Key: benchKey(i), Value: v})
	}
	return s
}

func BenchmarkApplySet(b *testing.B) {
	s := filledStore(b)
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	c := Command{Op: OpSet, Value: bytes.Repeat([]byte("y"), benchValue)}
	var buf []byte
	base := s.AppliedIndex()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.Key = keys[i%benchKeys]
		c.ID = RequestID{ClientID: uint64(1 + i%benchClients), Seq: uint64(1 + i/benchClients)}
		buf = c.MarshalAppend(buf[:0])
		if r := s.Apply(base+uint64(i)+1, buf); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

func BenchmarkApplyGet(b *testing.B) {
	s := filledStore(b)
	encs := make([][]byte, benchKeys)
	for i := range encs {
		encs[i] = (&Command{Op: OpGet, Key: benchKey(i)}).Marshal()
	}
	base := s.AppliedIndex()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if r := s.Apply(base+uint64(i)+1, encs[i%benchKeys]); !r.Value.Found {
			b.Fatal("missing key")
		}
	}
}

// BenchmarkReadGet is the path of a linearizable GET once its read index
// is applied: no log, no encoding, a shared lock.
func BenchmarkReadGet(b *testing.B) {
	s := filledStore(b)
	cmds := make([]Command, benchKeys)
	for i := range cmds {
		cmds[i] = Command{Op: OpGet, Key: benchKey(i)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if r := s.Read(&cmds[i%benchKeys]); !r.Value.Found {
				b.Error("missing key")
				return
			}
			i++
		}
	})
}

func BenchmarkSnapshot(b *testing.B) {
	s := filledStore(b)
	b.SetBytes(int64(len(snapshotBytes(b, s))))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := s.Snapshot(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRestore(b *testing.B) {
	snap := snapshotBytes(b, filledStore(b))
	s := New()
	b.SetBytes(int64(len(snap)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := s.Restore(bytes.NewReader(snap)); err != nil {
			b.Fatal(err)
		}
	}
}
