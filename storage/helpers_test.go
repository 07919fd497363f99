package storage

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
	"github.com/raftkv/raftkv/storage/snap"
)

const testDir = "/data"

// memOpts returns options for a small Storage on a simulated disk, with
// segments and cache small enough that tests roll segments and read from
// disk. Warnings go to logs when it is not nil.
func memOpts(m *vfs.Mem, logs *bytes.Buffer) Options {
	o := Options{NodeID: 1, ClusterID: 100, SegmentSize: 512, CacheBytes: 200, fs: m}
	if logs != nil {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	return o
}

func mustOpen(t testing.TB, opts Options) *Storage {
	t.Helper()
	s, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// ents returns entries lo..hi of term, with recognizable data.
func ents(lo, hi, term uint64) []raftpb.Entry {
	var out []raftpb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, raftpb.Entry{Index: i, Term: term, Data: fmt.Appendf(nil, "entry %04d of term %d", i, term)})
	}
	return out
}

func mustSave(t testing.TB, s *Storage, hs raftpb.HardState, es []raftpb.Entry) {
	t.Helper()
	if err := s.Save(hs, es); err != nil {
		t.Fatalf("Save(%+v, %d entries): %v", hs, len(es), err)
	}
}

// saveEach saves es one entry at a time, so that segments roll.
func saveEach(t testing.TB, s *Storage, hs raftpb.HardState, es []raftpb.Entry) {
	t.Helper()
	for i := range es {
		mustSave(t, s, hs, es[i:i+1])
	}
}

// writeSnapFile puts a snapshot file for sn straight into the snapshot
// directory on m, as a crash may leave one behind.
func writeSnapFile(t testing.TB, m *vfs.Mem, sn raftpb.Snapshot) {
	t.Helper()
	d, err := snap.Open(filepath.Join(testDir, "snap"), snap.Options{FS: m})
	if err != nil {
		t.Fatal(err)
	}
	w, err := d.Create(sn.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write(sn.Data); err != nil {
		t.Fatal(err)
	}
	st, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Install(); err != nil {
		t.Fatal(err)
	}
}

// loadSnapshot returns the current snapshot with its data, read from its
// file.
func loadSnapshot(s *Storage) (raftpb.Snapshot, error) {
	sn, err := s.Snapshot()
	if err != nil || sn.IsEmpty() {
		return sn, err
	}
	if sn.Data != nil {
		return sn, fmt.Errorf("Snapshot() returned %d bytes of data; it must return metadata only", len(sn.Data))
	}
	r, err := s.OpenSnapshot(sn.Metadata.Index, sn.Metadata.Term)
	if err != nil {
		return sn, err
	}
	defer r.Close()
	if sn.Data, err = io.ReadAll(r); err != nil {
		return sn, err
	}
	if len(sn.Data) == 0 {
		sn.Data = nil
	}
	return sn, nil
}
