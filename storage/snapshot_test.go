package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
)

// stage streams data into a staged snapshot file for md.
func stage(t testing.TB, s *Storage, md raftpb.SnapshotMetadata, data []byte) {
	t.Helper()
	w, err := s.CreateSnapshot(md)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for p := data; len(p) > 0; {
		k := min(len(p), 1000)
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if w.Size() != int64(len(data)) {
		t.Fatalf("Size: got %d, want %d", w.Size(), len(data))
	}
	if err := w.Stage(); err != nil {
		t.Fatal(err)
	}
}

func snapFiles(m *vfs.Mem) []string {
	names, _ := m.List(filepath.Join(testDir, "snap"))
	return names
}

// TestStagedSnapshotAdopted: the node's way to save a snapshot: stream it
// in, stage it, then save it by its metadata alone. Snapshot() then
// returns the metadata without data, and OpenSnapshot reads the data.
func TestStagedSnapshotAdopted(t *testing.T) {
	m := vfs.NewMem()
	s := mustOpen(t, memOpts(m, nil))
	mustSave(t, s, raftpb.HardState{Term: 1, Commit: 2}, ents(1, 5, 1))
	data := bytes.Repeat([]byte("state "), 5000)
	md := snapshotAt(20, 3, "").Metadata
	stage(t, s, md, data)
	if sn, _ := s.Snapshot(); !sn.IsEmpty() {
		t.Fatalf("a staged snapshot is current before SaveSnapshot: %+v", sn.Metadata)
	}
	if err := s.SaveSnapshot(raftpb.Snapshot{Metadata: md}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		sn, err := s.Snapshot()
		if err != nil || !reflect.DeepEqual(sn.Metadata, md) || sn.Data != nil {
			t.Fatalf("Snapshot: %+v (%d bytes) %v, want %+v without data", sn.Metadata, len(sn.Data), err, md)
		}
		got, err := loadSnapshot(s)
		if err != nil || !bytes.Equal(got.Data, data) {
			t.Fatalf("data read back: %d bytes, %v; want the %d written", len(got.Data), err, len(data))
		}
		if first, _ := s.FirstIndex(); first != 21 {
			t.Fatalf("first index %d, want 21", first)
		}
		_ = s.Close()
		s = mustOpen(t, memOpts(m.Crash(nil), nil))
	}
}

// TestSaveSnapshotWithoutStagedFile: metadata alone is not a snapshot.
func TestSaveSnapshotWithoutStagedFile(t *testing.T) {
	m := vfs.NewMem()
	s := mustOpen(t, memOpts(m, nil))
	stage(t, s, snapshotAt(20, 3, "").Metadata, []byte("other term"))
	err := s.SaveSnapshot(raftpb.Snapshot{Metadata: snapshotAt(20, 2, "").Metadata})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	if sn, _ := s.Snapshot(); !sn.IsEmpty() {
		t.Fatalf("a refused snapshot became current: %+v", sn.Metadata)
	}
}

// TestRestartDropsStagedSnapshot: a node that restarts after staging a
// snapshot (received, or made locally) but before adopting it has its
// previous state, and the staged file is gone; so is a half-written one.
func TestRestartDropsStagedSnapshot(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprint("crash=", crash), func(t *testing.T) {
			m := vfs.NewMem()
			s := mustOpen(t, memOpts(m, nil))
			mustSave(t, s, raftpb.HardState{Term: 1, Commit: 10}, ents(1, 12, 1))
			if err := s.SaveSnapshot(snapshotAt(10, 1, "at 10")); err != nil {
				t.Fatal(err)
			}
			stage(t, s, snapshotAt(30, 2, "").Metadata, []byte("staged at 30"))
			w, err := s.CreateSnapshot(snapshotAt(40, 2, "").Metadata)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte("half of it")); err != nil {
				t.Fatal(err)
			}
			disk := m
			if crash {
				disk = m.Crash(nil)
			} else {
				_ = s.Close()
			}
			s = mustOpen(t, memOpts(disk, nil))
			sn, err := loadSnapshot(s)
			if err != nil || sn.Metadata.Index != 10 || string(sn.Data) != "at 10" {
				t.Fatalf("after restart: snapshot %+v %q %v, want the one at 10", sn.Metadata, sn.Data, err)
			}
			if last, _ := s.LastIndex(); last != 12 {
				t.Fatalf("after restart: last index %d, want 12", last)
			}
			if got := snapFiles(disk); !slices.Equal(got, []string{"000000000000000a-0000000000000001.snap"}) {
				t.Fatalf("after restart the snapshot directory holds %q", got)
			}
			if err := s.SaveSnapshot(raftpb.Snapshot{Metadata: snapshotAt(30, 2, "").Metadata}); !errors.Is(err, ErrInvalid) {
				t.Fatalf("adopting a snapshot staged before the restart: got %v, want ErrInvalid", err)
			}
		})
	}
}

// TestStagedSnapshotsPruned: staged files that can no longer be adopted,
// and the oldest past maxStaged, are removed; a snapshot staged twice
// keeps the second file.
func TestStagedSnapshotsPruned(t *testing.T) {
	m := vfs.NewMem()
	s := mustOpen(t, memOpts(m, nil))
	mustSave(t, s, raftpb.HardState{Term: 1, Commit: 2}, ents(1, 5, 1))
	for i := uint64(1); i <= maxStaged+2; i++ {
		stage(t, s, snapshotAt(10*i, 2, "").Metadata, fmt.Appendf(nil, "at %d", 10*i))
	}
	stage(t, s, snapshotAt(60, 2, "").Metadata, []byte("at 60, again"))
	if got := len(snapFiles(m)); got != maxStaged {
		t.Fatalf("%d staged files on disk, want %d", got, maxStaged)
	}
	if err := s.SaveSnapshot(raftpb.Snapshot{Metadata: snapshotAt(20, 2, "").Metadata}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("adopting a pruned snapshot: got %v, want ErrInvalid", err)
	}
	if err := s.SaveSnapshot(raftpb.Snapshot{Metadata: snapshotAt(50, 2, "").Metadata}); err != nil {
		t.Fatal(err)
	}
	// Left: the snapshot at 50 and the staged one at 60.
	if got := snapFiles(m); len(got) != 2 || !strings.HasSuffix(got[0], ".snap") {
		t.Fatalf("snapshot directory holds %q, want the snapshot at 50 and one staged file", got)
	}
	if err := s.SaveSnapshot(raftpb.Snapshot{Metadata: snapshotAt(60, 2, "").Metadata}); err != nil {
		t.Fatal(err)
	}
	if sn, err := loadSnapshot(s); err != nil || string(sn.Data) != "at 60, again" {
		t.Fatalf("snapshot at 60: %q %v, want the second file staged", sn.Data, err)
	}
}

// TestOpenSnapshotOutlivesReplacement: a reader of a snapshot (a transfer
// to a follower) reads on while a newer snapshot replaces the file.
func TestOpenSnapshotOutlivesReplacement(t *testing.T) {
	m := vfs.NewMem()
	s := mustOpen(t, memOpts(m, nil))
	mustSave(t, s, raftpb.HardState{Term: 1, Commit: 2}, ents(1, 5, 1))
	if err := s.SaveSnapshot(snapshotAt(10, 1, "first snapshot")); err != nil {
		t.Fatal(err)
	}
	r, err := s.OpenSnapshot(10, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := s.SaveSnapshot(snapshotAt(20, 1, "second")); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != "first snapshot" {
		t.Fatalf("reading the replaced snapshot: %q %v", got, err)
	}
	if _, err := s.OpenSnapshot(10, 1); err == nil {
		t.Fatal("the replaced snapshot can still be opened")
	}
}

// TestSnapshotInstallFailureFailsStorage: a snapshot whose install cannot
// be made durable leaves the Storage refusing writes, as a failed WAL fsync
// does; one that cannot even be written does not.
func TestSnapshotInstallFailureFailsStorage(t *testing.T) {
	errDisk := errors.New("disk on fire")
	for _, tc := range []struct {
		op     vfs.Op
		failed bool
	}{{vfs.OpWrite, false}, {vfs.OpSync, false}, {vfs.OpRename, true}, {vfs.OpSyncDir, true}} {
		t.Run(string(tc.op), func(t *testing.T) {
			m := vfs.NewMem()
			s := mustOpen(t, memOpts(m, nil))
			mustSave(t, s, raftpb.HardState{Term: 1, Commit: 2}, ents(1, 5, 1))
			m.SetFail(func(op vfs.Op, name string) error {
				if op == tc.op && strings.Contains(name, "snap") {
					return errDisk
				}
				return nil
			})
			err := s.SaveSnapshot(snapshotAt(10, 1, "state"))
			m.SetFail(nil)
			if !errors.Is(err, errDisk) {
				t.Fatalf("got %v, want the disk's error", err)
			}
			err = s.Save(raftpb.HardState{}, ents(6, 6, 1))
			if got := errors.Is(err, ErrFailed); got != tc.failed {
				t.Fatalf("Save after the failure: %v; want failed=%v", err, tc.failed)
			}
		})
	}
}
