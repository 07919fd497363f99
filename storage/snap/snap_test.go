package snap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
	"github.com/raftkv/raftkv/storage/wal"
)

const dir = "/data/snap"

func meta(index, term uint64) raftpb.SnapshotMetadata {
	return raftpb.SnapshotMetadata{Index: index, Term: term, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}}
}

func openDir(t testing.TB, m *vfs.Mem, logs *bytes.Buffer) *Dir {
	t.Helper()
	d, err := Open(dir, Options{FS: m, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// write stages a snapshot of data, handing it to the Writer in pieces of
// step bytes, and returns it.
func write(t testing.TB, d *Dir, md raftpb.SnapshotMetadata, data []byte, step int) *Staged {
	t.Helper()
	w, err := d.Create(md)
	if err != nil {
		t.Fatal(err)
	}
	for p := data; len(p) > 0; {
		k := min(len(p), step)
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if w.Size() != int64(len(data)) {
		t.Fatalf("Size after writing: got %d, want %d", w.Size(), len(data))
	}
	s, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func install(t testing.TB, d *Dir, md raftpb.SnapshotMetadata, data []byte) {
	t.Helper()
	if err := write(t, d, md, data, len(data)+1).Install(); err != nil {
		t.Fatal(err)
	}
}

// readAll reads the snapshot at md through Open, both with Read and with
// WriteTo, and checks that they agree.
func readAll(t testing.TB, d *Dir, md raftpb.SnapshotMetadata) []byte {
	t.Helper()
	var outs [2][]byte
	for i := range outs {
		r, err := d.Open(md.Index, md.Term)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r.Metadata(), md) {
			t.Fatalf("Metadata: got %+v, want %+v", r.Metadata(), md)
		}
		if i == 0 {
			outs[i], err = io.ReadAll(struct{ io.Reader }{r}) // hide WriteTo
		} else {
			var buf bytes.Buffer
			_, err = r.WriteTo(&buf)
			outs[i] = buf.Bytes()
		}
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(outs[i])) != r.Size() {
			t.Fatalf("read %d bytes, Size said %d", len(outs[i]), r.Size())
		}
		r.Close()
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Fatal("Read and WriteTo returned different data")
	}
	return outs[0]
}

func TestWriteReadNewest(t *testing.T) {
	m := vfs.NewMem()
	d := openDir(t, m, &bytes.Buffer{})
	if _, ok, err := d.Newest(); ok || err != nil {
		t.Fatalf("empty dir: Newest ok=%v err=%v", ok, err)
	}
	big := bytes.Repeat([]byte("0123456789"), chunkSize/4) // several chunks
	snaps := []struct {
		md   raftpb.SnapshotMetadata
		data []byte
	}{{meta(5, 1), nil}, {meta(10, 2), big}, {meta(7, 2), []byte("x")}}
	for _, s := range snaps {
		install(t, d, s.md, s.data)
	}
	got, ok, err := d.Newest()
	if err != nil || !ok || got.Index != 10 {
		t.Fatalf("Newest: %v %v %v, want index 10", got, ok, err)
	}
	for _, s := range snaps {
		if data := readAll(t, d, s.md); !bytes.Equal(data, s.data) {
			t.Fatalf("snapshot %d: read %d bytes that differ from the %d written", s.md.Index, len(data), len(s.data))
		}
	}
	if err := d.RemoveExcept(10, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(5, 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a removed snapshot: got %v, want fs.ErrNotExist", err)
	}
}

// TestWritePieceSizes: however the data is cut into Writes, the file holds
// the same data.
func TestWritePieceSizes(t *testing.T) {
	m := vfs.NewMem()
	d := openDir(t, m, &bytes.Buffer{})
	d.chunk = 16
	data := []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz", 5))
	for _, step := range []int{1, 7, 15, 16, 17, 32, 200} {
		install(t, d, meta(uint64(step), 1), data)
		if got := readAll(t, d, meta(uint64(step), 1)); !bytes.Equal(got, data) {
			t.Fatalf("step %d: read %q, want %q", step, got, data)
		}
	}
}

// TestStagedIsNotASnapshot: until Install, a finished file is not seen by
// Newest, and reopening the directory (a restart) removes it, as it
// removes a file whose writing was interrupted.
func TestStagedIsNotASnapshot(t *testing.T) {
	m := vfs.NewMem()
	d := openDir(t, m, &bytes.Buffer{})
	install(t, d, meta(3, 1), []byte("old"))
	write(t, d, meta(9, 2), []byte("staged"), 2)
	w, err := d.Create(meta(12, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	if md, _, _ := d.Newest(); md.Index != 3 {
		t.Fatalf("Newest with a staged and a partial file: index %d, want 3", md.Index)
	}
	for _, crashed := range []bool{false, true} {
		disk := m
		if crashed {
			disk = m.Crash(nil)
		}
		d2 := openDir(t, disk, &bytes.Buffer{})
		names, _ := disk.List(dir)
		if want := []string{Name(3, 1)}; !reflect.DeepEqual(names, want) {
			t.Fatalf("crashed=%v: after reopening, the directory holds %q, want %q", crashed, names, want)
		}
		if md, _, _ := d2.Newest(); md.Index != 3 {
			t.Fatalf("crashed=%v: Newest index %d, want 3", crashed, md.Index)
		}
	}
	w.Abort()
}

// TestInstallSurvivesCrash: once Install returns, the snapshot is durable.
func TestInstallSurvivesCrash(t *testing.T) {
	m := vfs.NewMem()
	d := openDir(t, m, &bytes.Buffer{})
	install(t, d, meta(9, 2), []byte("durable"))
	d2 := openDir(t, m.Crash(nil), &bytes.Buffer{})
	if got := readAll(t, d2, meta(9, 2)); string(got) != "durable" {
		t.Fatalf("after a crash: %q", got)
	}
}

// TestWriterFailures: a failed write, sync or rename leaves no snapshot,
// and an aborted writer leaves no file.
func TestWriterFailures(t *testing.T) {
	errDisk := errors.New("disk on fire")
	for _, tc := range []struct {
		op   vfs.Op
		size int
	}{
		{vfs.OpCreate, chunkSize}, {vfs.OpWrite, chunkSize}, {vfs.OpRename, chunkSize}, {vfs.OpSyncDir, chunkSize},
		{vfs.OpSync, 3 * chunkSize / 2},     // the sync at the end
		{vfs.OpSync, syncEvery + chunkSize}, // a sync along the way
	} {
		op := tc.op
		t.Run(fmt.Sprintf("%s/%d", op, tc.size), func(t *testing.T) {
			m := vfs.NewMem()
			d := openDir(t, m, &bytes.Buffer{})
			m.SetFail(func(o vfs.Op, name string) error {
				if o == op {
					return errDisk
				}
				return nil
			})
			err := func() error {
				w, err := d.Create(meta(4, 1))
				if err != nil {
					return err
				}
				defer w.Abort()
				if _, err := w.Write(bytes.Repeat([]byte{7}, tc.size)); err != nil {
					return err
				}
				s, err := w.Finish()
				if err != nil {
					return err
				}
				if err := s.Install(); err != nil {
					_ = s.Remove() // the caller's duty: a staged file is its own
					return err
				}
				return nil
			}()
			if !errors.Is(err, errDisk) {
				t.Fatalf("got %v, want the disk's error", err)
			}
			m.SetFail(nil)
			if op == vfs.OpSyncDir {
				return // the rename happened; only its durability is unknown
			}
			if names, _ := m.List(dir); len(names) != 0 {
				t.Fatalf("a failed write left %q behind", names)
			}
		})
	}
	t.Run("abort", func(t *testing.T) {
		m := vfs.NewMem()
		d := openDir(t, m, &bytes.Buffer{})
		w, err := d.Create(meta(4, 1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("partial")); err != nil {
			t.Fatal(err)
		}
		w.Abort()
		w.Abort()
		if _, err := w.Write([]byte("more")); err == nil {
			t.Fatal("Write after Abort succeeded")
		}
		if _, err := w.Finish(); err == nil {
			t.Fatal("Finish after Abort succeeded")
		}
		if names, _ := m.List(dir); len(names) != 0 {
			t.Fatalf("an aborted write left %q behind", names)
		}
	})
}

// encode returns the bytes of a snapshot file, written with d's chunk size.
func encode(t testing.TB, chunk int, md raftpb.SnapshotMetadata, data []byte) []byte {
	t.Helper()
	m := vfs.NewMem()
	d := openDir(t, m, &bytes.Buffer{})
	d.chunk = chunk
	install(t, d, md, data)
	b, err := m.ReadFile(d.path(md.Index, md.Term))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encodeV1 returns a file in the format of version 1, which is no longer
// written but must still be read.
func encodeV1(md raftpb.SnapshotMetadata, data []byte, chunk int) []byte {
	head := append([]byte(magic), version1)
	head = binary.LittleEndian.AppendUint64(head, uint64(len(data)))
	head = md.MarshalAppend(head)
	b := wal.AppendRecord(nil, typeMeta, head)
	for len(data) > 0 {
		n := min(len(data), chunk)
		b = wal.AppendRecord(b, typeData, data[:n])
		data = data[n:]
	}
	return b
}

// decode reads a whole snapshot file from memory.
func decode(b []byte) (raftpb.SnapshotMetadata, []byte, error) {
	r, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return raftpb.SnapshotMetadata{}, nil, err
	}
	data, err := io.ReadAll(r)
	return r.Metadata(), data, err
}

func TestReadsVersion1(t *testing.T) {
	data := []byte(strings.Repeat("version one ", 10))
	md, got, err := decode(encodeV1(meta(8, 3), data, 16))
	if err != nil || !reflect.DeepEqual(md, meta(8, 3)) || !bytes.Equal(got, data) {
		t.Fatalf("got %+v %q %v", md, got, err)
	}
}

// damages returns every way to damage orig the tests try: every
// truncation, every flipped bit, and trailing garbage of a few lengths.
func damages(orig []byte) map[string][]byte {
	out := make(map[string][]byte)
	for n := range len(orig) {
		out["cut at "+itoa(n)] = orig[:n]
	}
	for bit := range len(orig) * 8 {
		b := bytes.Clone(orig)
		b[bit/8] ^= 1 << (bit % 8)
		out["bit "+itoa(bit)] = b
	}
	for _, tail := range [][]byte{{0}, {1, 2, 3}, wal.AppendRecord(nil, typeData, []byte("more"))} {
		out["trailing "+itoa(len(tail))] = append(bytes.Clone(orig), tail...)
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

// records splits a file into its records, frames included.
func records(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		_, _, n, err := wal.DecodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// TestWholeDataChecksum: records that are each intact but dropped,
// repeated or reordered are caught by the end record's length and checksum
// of the whole data.
func TestWholeDataChecksum(t *testing.T) {
	recs := records(t, encode(t, 4, meta(9, 2), []byte("aaaabbbbccccdd")))
	// meta, aaaa, bbbb, cccc, dd, end
	for name, order := range map[string][]int{
		"dropped":   {0, 1, 3, 4, 5},
		"repeated":  {0, 1, 2, 2, 3, 4, 5},
		"reordered": {0, 2, 1, 3, 4, 5},
		"swapped":   {0, 1, 3, 2, 4, 5},
	} {
		var b []byte
		for _, i := range order {
			b = append(b, recs[i]...)
		}
		if _, got, err := decode(b); !errors.Is(err, wal.ErrCorrupt) {
			t.Fatalf("%s: read %q, %v; want ErrCorrupt", name, got, err)
		}
	}
}

// TestReaderRefusesDamage: whatever the damage to a file (meta, data or
// end record; version 2 or 1), reading it fails with ErrCorrupt, before or
// at the latest instead of the final io.EOF, and never returns other data
// as if it were whole.
func TestReaderRefusesDamage(t *testing.T) {
	data := []byte(strings.Repeat("0123456789abcdef", 3) + "tail")
	for name, orig := range map[string][]byte{
		"v2":       encode(t, 16, meta(9, 2), data),
		"v2 empty": encode(t, 16, meta(9, 2), nil),
		"v1":       encodeV1(meta(9, 2), data, 16),
	} {
		if _, got, err := decode(orig); err != nil || (len(got) > 0 && !bytes.Equal(got, data)) {
			t.Fatalf("%s: the undamaged file does not read back: %q %v", name, got, err)
		}
		for what, b := range damages(orig) {
			md, got, err := decode(b)
			if err == nil {
				t.Fatalf("%s, %s: read %d bytes (metadata %+v) without an error", name, what, len(got), md)
			}
			if !errors.Is(err, wal.ErrCorrupt) {
				t.Fatalf("%s, %s: error does not wrap ErrCorrupt: %v", name, what, err)
			}
		}
	}
}

// TestDamagedSnapshotSkipped: every truncation and every flipped bit of the
// newest file makes it invalid; the older one is used instead, with a
// warning, and the bad file is set aside.
func TestDamagedSnapshotSkipped(t *testing.T) {
	base := vfs.NewMem()
	d := openDir(t, base, &bytes.Buffer{})
	install(t, d, meta(3, 1), []byte("old"))
	install(t, d, meta(9, 2), []byte("newer data"))
	name := dir + "/" + Name(9, 2)
	orig, _ := base.ReadFile(name)
	for what, b := range damages(orig) {
		m := base.Crash(nil)
		m.WriteFile(name, b)
		var logs bytes.Buffer
		d := openDir(t, m, &logs)
		md, ok, err := d.Newest()
		if err != nil || !ok || md.Index != 3 {
			t.Fatalf("%s: Newest %+v %v %v, want the older snapshot", what, md, ok, err)
		}
		if !strings.Contains(logs.String(), name) {
			t.Fatalf("%s: warning does not name the file: %q", what, logs.String())
		}
		if _, err := m.ReadFile(name + brokenExt); err != nil {
			t.Fatalf("%s: damaged file not set aside: %v", what, err)
		}
	}
}

// FuzzReader: whatever the bytes, the reader never panics, fails only with
// ErrCorrupt, and what it accepts writes back to a file that reads the same.
func FuzzReader(f *testing.F) {
	f.Add(encode(f, 4, meta(9, 2), []byte("some data")))
	f.Add(encode(f, 4, meta(1, 1), nil))
	f.Add(encodeV1(meta(9, 2), []byte("data"), 2))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		md, data, err := decode(b)
		if err != nil {
			if !errors.Is(err, wal.ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		if md.Index == 0 {
			return // Create refuses it, and nothing writes it
		}
		md2, data2, err := decode(encode(t, 7, md, data))
		if err != nil || !reflect.DeepEqual(md2, md) || !bytes.Equal(data2, data) {
			t.Fatalf("rewritten snapshot reads %+v %q %v, want %+v %q", md2, data2, err, md, data)
		}
	})
}
