package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/storage/internal/vfs"
)

const dir = "/data/wal"

type rec struct {
	pos  Pos
	typ  RecordType
	data string
}

// open opens the WAL in dir of fs and returns the records replayed and
// what was logged.
func open(t testing.TB, fs vfs.FS) (*WAL, []rec, string, error) {
	t.Helper()
	var logs bytes.Buffer
	var recs []rec
	w, err := Open(dir, Options{FS: fs, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, func(pos Pos, typ RecordType, p []byte) error {
		recs = append(recs, rec{pos, typ, string(p)})
		return nil
	})
	if w != nil {
		t.Cleanup(func() { _ = w.Close() })
	}
	return w, recs, logs.String(), err
}

func mustOpen(t testing.TB, fs vfs.FS) (*WAL, []rec) {
	t.Helper()
	w, recs, _, err := open(t, fs)
	if err != nil {
		t.Fatal(err)
	}
	return w, recs
}

// write writes each payload as its own synced batch of type 1, returning
// the records.
func write(t testing.TB, w *WAL, payloads ...string) []rec {
	t.Helper()
	var out []rec
	for _, p := range payloads {
		var b Batch
		b.Add(1, []byte(p))
		pos, err := w.Write(&b)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		out = append(out, rec{pos, 1, p})
	}
	return out
}

func cut(t testing.TB, w *WAL, opening ...string) []rec {
	t.Helper()
	var b Batch
	for _, p := range opening {
		b.Add(2, []byte(p))
	}
	if err := w.Cut(&b); err != nil {
		t.Fatal(err)
	}
	var out []rec
	off := int64(headerSize)
	for _, p := range opening {
		out = append(out, rec{Pos{w.Seq(), off}, 2, p})
		off += FrameSize + int64(len(p))
	}
	return out
}

// sample builds a WAL of two segments with a few small records each.
func sample(t testing.TB) (*vfs.Mem, []rec) {
	t.Helper()
	fs := vfs.NewMem()
	w, _ := mustOpen(t, fs)
	var want []rec
	want = append(want, cut(t, w, "open0")...)
	want = append(want, write(t, w, "a", "bb", "ccc")...)
	want = append(want, cut(t, w, "open1")...)
	want = append(want, write(t, w, "dddd", "e", "ff")...)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return fs, want
}

func segFile(seq uint64) string { return filepath.Join(dir, segmentName(seq)) }

func checkRecs(t *testing.T, got, want []rec) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("replayed records:\n got %v\nwant %v", got, want)
	}
}

func TestReplayAndReadFrom(t *testing.T) {
	fs, want := sample(t)
	w, got := mustOpen(t, fs)
	checkRecs(t, got, want)
	if segs := w.Segments(); !slices.Equal(segs, []uint64{0, 1}) {
		t.Fatalf("segments %v, want [0 1]", segs)
	}
	// Appending after reopening continues the last segment.
	want = append(want, write(t, w, "g")...)
	_ = w.Close()
	_, got = mustOpen(t, fs)
	checkRecs(t, got, want)

	var read []rec
	err := w.ReadFrom(want[1].pos, func(pos Pos, typ RecordType, p []byte) (bool, error) {
		read = append(read, rec{pos, typ, string(p)})
		return true, nil
	})
	if err != io.EOF {
		t.Fatalf("ReadFrom to the end of segment 0: got %v, want io.EOF", err)
	}
	checkRecs(t, read, want[1:4])
}

func TestEmptyLogNeedsCut(t *testing.T) {
	w, recs := mustOpen(t, vfs.NewMem())
	if !w.Empty() || len(recs) != 0 {
		t.Fatalf("new WAL: Empty()=%v with %d records", w.Empty(), len(recs))
	}
	var b Batch
	b.Add(1, []byte("x"))
	if _, err := w.Write(&b); !errors.Is(err, ErrNoSegment) {
		t.Fatalf("Write before Cut: got %v, want ErrNoSegment", err)
	}
}

// TestTornTailAtEveryOffset cuts the last record at every byte offset, and
// also zero-fills it from every offset: the log recovers to the record
// before, with a warning naming file and offset, and keeps working.
func TestTornTailAtEveryOffset(t *testing.T) {
	base, want := sample(t)
	last := want[len(want)-1]
	name := segFile(last.pos.Seq)
	orig, _ := base.ReadFile(name)
	for off := int(last.pos.Off); off < len(orig); off++ {
		for _, zero := range []bool{false, true} {
			t.Run(fmt.Sprintf("offset=%d/zeroed=%v", off, zero), func(t *testing.T) {
				fs := base.Crash(nil)
				damaged := bytes.Clone(orig[:off])
				if zero {
					damaged = append(damaged, make([]byte, len(orig)-off)...)
				}
				fs.WriteFile(name, damaged)
				w, got, logs, err := open(t, fs)
				if err != nil {
					t.Fatal(err)
				}
				checkRecs(t, got, want[:len(want)-1])
				torn := off > int(last.pos.Off) || zero
				wantLog := fmt.Sprintf("file=%s offset=%d", name, last.pos.Off)
				if torn != strings.Contains(logs, wantLog) {
					t.Fatalf("torn=%v but log is %q (looking for %q)", torn, logs, wantLog)
				}
				again := write(t, w, "new")
				_ = w.Close()
				_, got = mustOpen(t, fs)
				checkRecs(t, got, append(want[:len(want)-1:len(want)-1], again...))
			})
		}
	}
}

// TestBitFlipDetected flips every bit of every record: damage to the last
// record of the last segment is indistinguishable from a torn write and is
// cut with a warning; anywhere else Open refuses, naming file and offset.
func TestBitFlipDetected(t *testing.T) {
	base, want := sample(t)
	for _, seq := range []uint64{0, 1} {
		name := segFile(seq)
		orig, _ := base.ReadFile(name)
		lastStart := int(want[len(want)-1].pos.Off)
		for bit := 0; bit < len(orig)*8; bit++ {
			fs := base.Crash(nil)
			damaged := bytes.Clone(orig)
			damaged[bit/8] ^= 1 << (bit % 8)
			fs.WriteFile(name, damaged)
			_, got, logs, err := open(t, fs)
			if seq == 1 && bit/8 >= lastStart {
				if err != nil {
					t.Fatalf("segment %d bit %d (last record): %v", seq, bit, err)
				}
				checkRecs(t, got, want[:len(want)-1])
				if !strings.Contains(logs, "torn") {
					t.Fatalf("segment %d bit %d: no warning logged", seq, bit)
				}
				continue
			}
			if seq == 0 && bit/8 >= len(orig)-len(sealRecord(0)) && err == nil {
				// The seal carries no data: damage that looks like a
				// torn seal loses nothing.
				checkRecs(t, got, want)
				continue
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "offset") {
				t.Fatalf("segment %d bit %d: got %v, want ErrCorrupt naming %s and an offset", seq, bit, err, name)
			}
		}
	}
}

func TestDamagedFollowedByIntactRecordRefused(t *testing.T) {
	base, want := sample(t)
	name := segFile(1)
	orig, _ := base.ReadFile(name)
	// Zero the middle record of the last segment: a torn write never
	// leaves intact records behind it.
	mid := want[len(want)-2]
	damaged := bytes.Clone(orig)
	clear(damaged[mid.pos.Off : mid.pos.Off+FrameSize+int64(len(mid.data))])
	fs := base.Crash(nil)
	fs.WriteFile(name, damaged)
	_, _, _, err := open(t, fs)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "intact record follows") {
		t.Fatalf("got %v, want ErrCorrupt about an intact record following", err)
	}
}

func TestZeroFilledSegmentRefused(t *testing.T) {
	for _, seq := range []uint64{0, 1} {
		base, _ := sample(t)
		orig, _ := base.ReadFile(segFile(seq))
		base.WriteFile(segFile(seq), make([]byte, len(orig)))
		_, _, _, err := open(t, base)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), segFile(seq)) {
			t.Errorf("segment %d zero-filled: got %v, want ErrCorrupt naming it", seq, err)
		}
	}
}

func TestMissingSegmentRefused(t *testing.T) {
	fs := vfs.NewMem()
	w, _ := mustOpen(t, fs)
	for range 3 {
		cut(t, w)
		write(t, w, "x")
	}
	_ = w.Close()

	middle := fs.Crash(nil)
	middle.RemoveFile(segFile(1))
	if _, _, _, err := open(t, middle); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), segmentName(1)+" is missing") {
		t.Errorf("middle segment removed: got %v", err)
	}
	last := fs.Crash(nil)
	last.RemoveFile(segFile(2))
	if _, _, _, err := open(t, last); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "sealed") {
		t.Errorf("last segment removed: got %v", err)
	}
	renamed := fs.Crash(nil)
	b, _ := renamed.ReadFile(segFile(2))
	renamed.RemoveFile(segFile(2))
	renamed.WriteFile(segFile(3), b)
	if _, _, _, err := open(t, renamed); !errors.Is(err, ErrCorrupt) {
		t.Errorf("segment renamed: got %v", err)
	}
}

// TestTornSealAccepted: a crash while sealing a segment (after its
// successor was created) loses nothing, so it must not block recovery.
func TestTornSealAccepted(t *testing.T) {
	base, want := sample(t)
	name := segFile(0)
	orig, _ := base.ReadFile(name)
	seal := sealRecord(0)
	if !bytes.HasSuffix(orig, seal) {
		t.Fatal("segment 0 does not end with its seal")
	}
	start := len(orig) - len(seal)
	for off := start; off < len(orig); off++ {
		for _, zero := range []bool{false, true} {
			fs := base.Crash(nil)
			damaged := bytes.Clone(orig[:off])
			if zero {
				damaged = append(damaged, make([]byte, len(orig)-off)...)
			}
			fs.WriteFile(name, damaged)
			_, got, _, err := open(t, fs)
			if err != nil {
				t.Fatalf("seal cut at %d (zeroed %v): %v", off, zero, err)
			}
			checkRecs(t, got, want)
		}
	}
}

func TestWriteFailureIsSticky(t *testing.T) {
	fs := vfs.NewMem()
	w, _ := mustOpen(t, fs)
	cut(t, w)
	boom := errors.New("disk on fire")
	fs.SetFail(func(op vfs.Op, name string) error {
		if op == vfs.OpSync {
			return boom
		}
		return nil
	})
	var b Batch
	b.Add(1, []byte("x"))
	if _, err := w.Write(&b); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); !errors.Is(err, boom) {
		t.Fatalf("Sync: got %v, want %v", err, boom)
	}
	fs.SetFail(nil)
	if _, err := w.Write(&b); !errors.Is(err, boom) {
		t.Fatalf("Write after a failed Sync: got %v, want the earlier failure", err)
	}
}

func TestDetachAndRemove(t *testing.T) {
	fs := vfs.NewMem()
	w, _ := mustOpen(t, fs)
	var want []rec
	for i := range 4 {
		want = append(want, cut(t, w, fmt.Sprint("open", i))...)
		want = append(want, write(t, w, fmt.Sprint("r", i))...)
	}
	if err := w.RemoveDetached(w.DetachBefore(2)); err != nil {
		t.Fatal(err)
	}
	if err := w.RemoveDetached(w.DetachBefore(100)); err != nil { // never the current one
		t.Fatal(err)
	}
	_ = w.Close()
	w, got := mustOpen(t, fs)
	checkRecs(t, got, want[6:])
	if segs := w.Segments(); !slices.Equal(segs, []uint64{3}) {
		t.Fatalf("segments %v, want [3]", segs)
	}
	err := w.ReadFrom(want[0].pos, func(Pos, RecordType, []byte) (bool, error) { return true, nil })
	if err == nil || !strings.Contains(err.Error(), "not exist") {
		t.Fatalf("ReadFrom a removed segment: got %v", err)
	}
}

func TestLeftoverTempFileRemoved(t *testing.T) {
	fs, want := sample(t)
	fs.WriteFile(segFile(2)+".tmp", []byte("half a segment"))
	_, got := mustOpen(t, fs)
	checkRecs(t, got, want)
	if _, err := fs.ReadFile(segFile(2) + ".tmp"); err == nil {
		t.Fatal("leftover temporary file still there")
	}
}

// FuzzScanSegment feeds arbitrary bytes to the segment reader: it must not
// panic, and whatever it accepts must be exactly the records in the input.
func FuzzScanSegment(f *testing.F) {
	fs, _ := sample(f)
	for _, seq := range []uint64{0, 1} {
		b, _ := fs.ReadFile(segFile(seq))
		f.Add(b)
		f.Add(b[:len(b)-3])
	}
	f.Add(appendHeader(nil, 0, headerSize))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		var recs []rec
		s, err := scanSegment(bytes.NewReader(b), int64(len(b)), func(off int64, typ RecordType, p []byte) error {
			recs = append(recs, rec{Pos{Off: off}, typ, string(p)})
			return nil
		})
		if err != nil {
			return
		}
		if s.end < s.openEnd && s.damage == nil || s.end > int64(len(b)) {
			t.Fatalf("scan ended at %d (opening ends at %d) in %d bytes, damage %v", s.end, s.openEnd, len(b), s.damage)
		}
		if (s.damage == nil) != (s.end == int64(len(b))) {
			t.Fatalf("damage %v but scan ended at %d of %d", s.damage, s.end, len(b))
		}
		for _, r := range recs {
			typ, p, _, err := DecodeRecord(b[r.pos.Off:])
			if err != nil || typ != r.typ || string(p) != r.data {
				t.Fatalf("record at %d does not decode as visited: %v", r.pos.Off, err)
			}
		}
	})
}
