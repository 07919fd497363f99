package snap

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
	"github.com/raftkv/raftkv/storage/wal"
)

const dir = "/data/snap"

func snapshot(index, term uint64, data []byte) raftpb.Snapshot {
	return raftpb.Snapshot{
		Metadata: raftpb.SnapshotMetadata{Index: index, Term: term, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}},
		Data:     data,
	}
}

func openDir(t *testing.T, m *vfs.Mem, logs *bytes.Buffer) *Dir {
	t.Helper()
	d, err := Open(dir, Options{FS: m, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSaveLoadNewest(t *testing.T) {
	m := vfs.NewMem()
	d := openDir(t, m, &bytes.Buffer{})
	if _, ok, err := d.Newest(); ok || err != nil {
		t.Fatalf("empty dir: Newest ok=%v err=%v", ok, err)
	}
	big := bytes.Repeat([]byte("0123456789"), chunkSize/4) // several chunks
	for _, s := range []raftpb.Snapshot{snapshot(5, 1, nil), snapshot(10, 2, big), snapshot(7, 2, []byte("x"))} {
		if err := d.Save(s); err != nil {
			t.Fatal(err)
		}
	}
	meta, ok, err := d.Newest()
	if err != nil || !ok || meta.Index != 10 {
		t.Fatalf("Newest: %v %v %v, want index 10", meta, ok, err)
	}
	got, err := d.Load(10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := snapshot(10, 2, big); !reflect.DeepEqual(got, want) {
		t.Fatalf("Load returned a different snapshot (meta %+v, %d bytes)", got.Metadata, len(got.Data))
	}
	if err := d.RemoveExcept(10, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(5, 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a removed snapshot: got %v, want fs.ErrNotExist", err)
	}
}

// TestDamagedSnapshotSkipped: every truncation and every flipped bit of the
// newest file makes it invalid; the older one is used instead, with a
// warning, and the bad file is set aside.
func TestDamagedSnapshotSkipped(t *testing.T) {
	base := vfs.NewMem()
	d := openDir(t, base, &bytes.Buffer{})
	if err := d.Save(snapshot(3, 1, []byte("old"))); err != nil {
		t.Fatal(err)
	}
	if err := d.Save(snapshot(9, 2, []byte("newer data"))); err != nil {
		t.Fatal(err)
	}
	name := dir + "/" + Name(9, 2)
	orig, _ := base.ReadFile(name)
	var damages [][]byte
	for n := range len(orig) {
		damages = append(damages, orig[:n])
	}
	for bit := range len(orig) * 8 {
		b := bytes.Clone(orig)
		b[bit/8] ^= 1 << (bit % 8)
		damages = append(damages, b)
	}
	damages = append(damages, append(bytes.Clone(orig), 0))
	for i, b := range damages {
		m := base.Crash(nil)
		m.WriteFile(name, b)
		var logs bytes.Buffer
		d := openDir(t, m, &logs)
		meta, ok, err := d.Newest()
		if err != nil || !ok || meta.Index != 3 {
			t.Fatalf("damage %d: Newest %+v %v %v, want the older snapshot", i, meta, ok, err)
		}
		if !strings.Contains(logs.String(), name) {
			t.Fatalf("damage %d: warning does not name the file: %q", i, logs.String())
		}
		if _, err := m.ReadFile(name + brokenExt); err != nil {
			t.Fatalf("damage %d: damaged file not set aside: %v", i, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	var buf bytes.Buffer
	_ = Encode(&buf, snapshot(9, 2, []byte("data")))
	f.Add(buf.Bytes())
	buf.Reset()
	_ = Encode(&buf, snapshot(1, 1, nil))
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(bytes.NewReader(b), int64(len(b)), true)
		if err != nil {
			if !errors.Is(err, wal.ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		var again bytes.Buffer
		if err := Encode(&again, s); err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(bytes.NewReader(again.Bytes()), int64(again.Len()), true); err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
	})
}
