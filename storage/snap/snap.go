// Package snap keeps raft snapshots on disk: one checksummed file per
// snapshot, named by index and term so the newest sorts last, streamed in
// and out in bounded memory whatever the snapshot's size.
//
// A file is a sequence of records in the WAL's framing (length, type,
// CRC-32C, payload):
//
//	meta   magic "raftkvsn" | version 2 | raftpb.SnapshotMetadata
//	data   the snapshot's data in chunks of at most 1 MiB, any number of them
//	end    data length uint64 LE | CRC-32C of all the data uint32 LE
//
// and nothing after. The end record is what lets a writer stream data whose
// length it does not know in advance, and a reader learn the length before
// reading the data. Version 1 files, written before snapshots were
// streamed, carry the data length in the meta record (after the version
// byte) and have no end record; they are still read. A file that is short,
// long, or fails a checksum is not a snapshot.
//
// # Writing
//
// Dir.Create returns a Writer on a temporary file, whose name ends in
// ".tmp": no reader ever takes it for a snapshot, and Open deletes it as the
// leftover of an interrupted write. Writer.Finish completes the file and
// fsyncs it; it is then staged: complete and durable, but still not a
// snapshot. Staged.Install renames it to its final name and fsyncs the
// directory, after which it survives a crash. Splitting the two lets a
// snapshot received from a leader wait, verified and durable, until the
// raft core decides to use it, without a restart in between ever mistaking
// it for the node's state.
//
// # Reading
//
// Dir.Open checks the meta and end records and returns a Reader of the
// data, which checks every chunk as it goes and, at the end, the length and
// the checksum of the whole: a Reader returns io.EOF only after everything
// was verified, so a consumer that commits only at io.EOF never commits
// damaged data.
package snap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
	"github.com/raftkv/raftkv/storage/wal"
)

const (
	magic     = "raftkvsn"
	version1  = 1 // data length in the meta record, no end record
	version   = 2 // the version written
	typeMeta  = 1
	typeData  = 2
	typeEnd   = 3
	chunkSize = 1 << 20
	// syncEvery is how much data a Writer lets pile up unsynced. Syncing
	// as it goes spreads the write-back over the whole write, rather than
	// flushing hundreds of MiB at once at the end and making every WAL
	// fsync queue behind it: BenchmarkWriteLatencyDuringSnapshot (package
	// node) showed worse write tails without it. Each sync also stalls the
	// writer, though: 8 MiB cost a third of the throughput of
	// BenchmarkSnapshot, 32 MiB a sixth, for about the same tails.
	syncEvery = 32 << 20
	ext       = ".snap"
	tmpExt    = ".tmp"
	// brokenExt marks a file that failed its checks, kept for a human
	// to look at rather than deleted.
	brokenExt = ".broken"

	// endSize is the size of the end record, frame included.
	endSize = wal.FrameSize + 8 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a Dir.
type Options struct {
	// FS is the file system; nil means the operating system's.
	FS vfs.FS
	// Logger receives warnings about damaged snapshot files; nil discards.
	Logger *slog.Logger
	// NoSync skips every fsync (tests and benchmarks only).
	NoSync bool
}

// Dir is a directory of snapshot files. It is safe for concurrent use;
// each Writer, Staged and Reader it returns is for one goroutine at a time.
type Dir struct {
	fs     vfs.FS
	dir    string
	logger *slog.Logger
	sync   bool
	chunk  int           // data bytes per record; chunkSize but in tests
	seq    atomic.Uint64 // makes the temporary names of concurrent writers unique
}

// Open prepares dir, creating it if needed and removing leftovers of
// interrupted writes (temporary files, staged snapshots never installed).
func Open(dir string, opts Options) (*Dir, error) {
	d := &Dir{fs: opts.FS, dir: dir, logger: opts.Logger, sync: !opts.NoSync, chunk: chunkSize}
	if d.fs == nil {
		d.fs = vfs.OS{}
	}
	if d.logger == nil {
		d.logger = slog.New(slog.DiscardHandler)
	}
	if _, err := vfs.PrepareDir(d.fs, dir); err != nil {
		return nil, fmt.Errorf("snap: %w", err)
	}
	return d, nil
}

// Name returns the file name of the snapshot at index and term.
func Name(index, term uint64) string { return fmt.Sprintf("%016x-%016x%s", index, term, ext) }

func parseName(name string) (index, term uint64, ok bool) {
	base, ok := strings.CutSuffix(name, ext)
	if !ok || len(base) != 33 || base[16] != '-' {
		return 0, 0, false
	}
	index, err1 := strconv.ParseUint(base[:16], 16, 64)
	term, err2 := strconv.ParseUint(base[17:], 16, 64)
	return index, term, err1 == nil && err2 == nil
}

func (d *Dir) path(index, term uint64) string { return filepath.Join(d.dir, Name(index, term)) }

// Writer streams one snapshot's data into a temporary file. Write errors
// are sticky: after one, every call fails and Finish removes the file.
type Writer struct {
	d     *Dir
	f     vfs.File
	tmp   string
	meta  raftpb.SnapshotMetadata
	chunk []byte // data not yet written, up to d.chunk bytes
	rec   []byte // scratch for one framed record
	n     uint64 // data bytes accepted
	crc   uint32 // of the data accepted
	err   error
	done  bool // Finish or Abort ran
	// unsynced is how much data was written since the last fsync.
	unsynced int64
}

// Create starts writing the snapshot meta describes. The caller must end
// the Writer with Finish or Abort.
func (d *Dir) Create(meta raftpb.SnapshotMetadata) (*Writer, error) {
	if meta.Index == 0 {
		return nil, errors.New("snap: create a snapshot at index 0")
	}
	head := append([]byte(magic), version)
	head = meta.MarshalAppend(head)
	if len(head) > wal.MaxRecordSize {
		return nil, fmt.Errorf("snap: snapshot metadata of %d bytes is too large", len(head))
	}
	tmp := fmt.Sprintf("%s.%d%s", d.path(meta.Index, meta.Term), d.seq.Add(1), tmpExt)
	f, err := d.fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("snap: create %s: %w", tmp, err)
	}
	w := &Writer{d: d, f: f, tmp: tmp, meta: meta, chunk: make([]byte, 0, d.chunk)}
	w.writeRecord(typeMeta, head)
	if w.err != nil {
		err := w.err
		w.Abort()
		return nil, err
	}
	return w, nil
}

func (w *Writer) writeRecord(typ wal.RecordType, payload []byte) {
	if w.err != nil {
		return
	}
	w.rec = wal.AppendRecord(w.rec[:0], typ, payload)
	if _, err := w.f.Write(w.rec); err != nil {
		w.err = fmt.Errorf("snap: write %s: %w", w.tmp, err)
	}
}

// Write appends p to the snapshot's data.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("snap: write after Finish or Abort")
	}
	n := len(p)
	for len(p) > 0 && w.err == nil {
		k := min(len(p), w.d.chunk-len(w.chunk))
		w.chunk = append(w.chunk, p[:k]...)
		p = p[k:]
		if len(w.chunk) == w.d.chunk {
			w.flush()
		}
	}
	if w.err != nil {
		return 0, w.err
	}
	w.n += uint64(n)
	return n, nil
}

// flush writes the buffered data as one record.
func (w *Writer) flush() {
	if len(w.chunk) == 0 {
		return
	}
	w.crc = crc32.Update(w.crc, castagnoli, w.chunk)
	w.writeRecord(typeData, w.chunk)
	w.unsynced += int64(len(w.chunk))
	w.chunk = w.chunk[:0]
	if w.d.sync && w.unsynced >= syncEvery && w.err == nil {
		w.unsynced = 0
		if err := w.f.Sync(); err != nil {
			w.err = fmt.Errorf("snap: sync %s: %w", w.tmp, err)
		}
	}
}

// Size returns how many data bytes were written so far.
func (w *Writer) Size() int64 { return int64(w.n) }

// Finish writes the end record and makes the file durable, still under its
// temporary name, and returns it staged. On failure the file is removed.
func (w *Writer) Finish() (*Staged, error) {
	if w.done {
		return nil, errors.New("snap: Finish after Finish or Abort")
	}
	w.flush()
	var end [12]byte
	binary.LittleEndian.PutUint64(end[:], w.n)
	binary.LittleEndian.PutUint32(end[8:], w.crc)
	w.writeRecord(typeEnd, end[:])
	if w.err == nil && w.d.sync {
		if err := w.f.Sync(); err != nil {
			w.err = fmt.Errorf("snap: sync %s: %w", w.tmp, err)
		}
	}
	if w.err != nil {
		err := w.err
		w.Abort()
		return nil, err
	}
	w.done = true
	if err := w.f.Close(); err != nil {
		_ = w.d.fs.Remove(w.tmp)
		return nil, fmt.Errorf("snap: close %s: %w", w.tmp, err)
	}
	return &Staged{d: w.d, tmp: w.tmp, meta: w.meta, size: int64(w.n)}, nil
}

// Abort closes and removes the file. It does nothing after Finish or
// Abort, so it may be deferred.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	_ = w.f.Close()
	// Best effort: Open removes leftovers anyway.
	_ = w.d.fs.Remove(w.tmp)
}

// Staged is a complete, durable snapshot file under its temporary name,
// waiting to be installed or removed.
type Staged struct {
	d    *Dir
	tmp  string
	meta raftpb.SnapshotMetadata
	size int64
}

// Metadata returns the staged snapshot's metadata.
func (s *Staged) Metadata() raftpb.SnapshotMetadata { return s.meta }

// Size returns the length of the staged snapshot's data.
func (s *Staged) Size() int64 { return s.size }

// Install gives the staged file its final name and makes the rename
// durable: from then on it is a snapshot of the directory, replacing any
// file of the same index and term.
func (s *Staged) Install() error {
	path := s.d.path(s.meta.Index, s.meta.Term)
	if err := s.d.fs.Rename(s.tmp, path); err != nil {
		return fmt.Errorf("snap: install %s: %w", path, err)
	}
	if s.d.sync {
		if err := s.d.fs.SyncDir(s.d.dir); err != nil {
			return fmt.Errorf("snap: install %s: sync directory: %w", path, err)
		}
	}
	return nil
}

// Remove deletes the staged file.
func (s *Staged) Remove() error {
	if err := s.d.fs.Remove(s.tmp); err != nil {
		return fmt.Errorf("snap: remove staged %s: %w", s.tmp, err)
	}
	return nil
}

// Reader reads one snapshot file's data, verifying it as it goes (see the
// package comment). Errors about the file's contents wrap wal.ErrCorrupt;
// others are I/O errors. Errors are sticky.
type Reader struct {
	c    io.Closer // nil for NewReader
	name string    // for errors
	meta raftpb.SnapshotMetadata
	size uint64 // data length announced
	sum  uint32 // CRC-32C of the data announced (version 2)
	v1   bool   // no announced checksum
	rd   *wal.Reader
	left []byte // the unread rest of the current chunk
	got  uint64 // data bytes seen so far
	crc  uint32 // of the data seen so far
	err  error
}

// Open opens the snapshot at index and term for reading. If the file is
// gone (a newer snapshot replaced it) the error wraps fs.ErrNotExist.
func (d *Dir) Open(index, term uint64) (*Reader, error) {
	path := d.path(index, term)
	f, size, err := vfs.OpenSized(d.fs, path)
	if err != nil {
		return nil, fmt.Errorf("snap: %w", err)
	}
	r, err := newReader(f, size, path)
	if err == nil && (r.meta.Index != index || r.meta.Term != term) {
		err = fmt.Errorf("snap: %s: %w: holds snapshot %d/%d", path, wal.ErrCorrupt, r.meta.Index, r.meta.Term)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	r.c = f
	return r, nil
}

// NewReader reads a snapshot file of size bytes from r; Close does nothing.
func NewReader(r io.ReaderAt, size int64) (*Reader, error) { return newReader(r, size, "snapshot") }

func newReader(r io.ReaderAt, size int64, name string) (*Reader, error) {
	rd := &Reader{name: name}
	if err := rd.open(r, size); err != nil {
		return nil, fmt.Errorf("snap: %s: %w", name, err)
	}
	return rd, nil
}

// open checks the meta record and, in version 2, the end record.
func (r *Reader) open(f io.ReaderAt, size int64) error {
	rd := wal.NewReader(f, 0, size)
	typ, p, err := rd.Next()
	if err == nil && (typ != typeMeta || len(p) < len(magic)+1 || string(p[:len(magic)]) != magic) {
		err = fmt.Errorf("%w: not a snapshot file", wal.ErrCorrupt)
	}
	if err != nil {
		return fmt.Errorf("metadata at offset 0: %w", damaged(err))
	}
	p = p[len(magic):]
	dataEnd := size
	switch v := p[0]; v {
	case version1:
		if len(p) < 9 {
			return fmt.Errorf("metadata at offset 0: %w: too short", wal.ErrCorrupt)
		}
		r.v1, r.size = true, binary.LittleEndian.Uint64(p[1:])
		p = p[9:]
	case version:
		p = p[1:]
		dataEnd = size - endSize
		if dataEnd < rd.Offset() {
			return fmt.Errorf("%w: no room for the end record", wal.ErrCorrupt)
		}
		var b [endSize]byte
		if _, err := f.ReadAt(b[:], dataEnd); err != nil {
			return fmt.Errorf("read end record at offset %d: %w", dataEnd, err)
		}
		typ, end, _, err := wal.DecodeRecord(b[:])
		if err == nil && (typ != typeEnd || len(end) != endSize-wal.FrameSize) {
			err = fmt.Errorf("%w: not an end record", wal.ErrCorrupt)
		}
		if err != nil {
			return fmt.Errorf("end record at offset %d: %w", dataEnd, damaged(err))
		}
		r.size, r.sum = binary.LittleEndian.Uint64(end), binary.LittleEndian.Uint32(end[8:])
	default:
		return fmt.Errorf("metadata at offset 0: %w: unsupported snapshot version %d", wal.ErrCorrupt, v)
	}
	meta, err := raftpb.UnmarshalSnapshotMetadata(p)
	if err != nil {
		return fmt.Errorf("metadata at offset 0: %w: %w", wal.ErrCorrupt, err)
	}
	r.meta = meta
	if r.size > uint64(dataEnd) {
		return fmt.Errorf("%w: %d bytes of data announced in a %d byte file", wal.ErrCorrupt, r.size, size)
	}
	r.rd = wal.NewReader(f, rd.Offset(), dataEnd)
	return nil
}

// Metadata returns the snapshot's metadata.
func (r *Reader) Metadata() raftpb.SnapshotMetadata { return r.meta }

// Size returns the length of the snapshot's data, as the file announces it
// (reading all of it verifies that).
func (r *Reader) Size() int64 { return int64(r.size) }

// Read reads the snapshot's data. It returns io.EOF only once the whole
// file has been verified.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.left) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.next()
	}
	n := copy(p, r.left)
	r.left = r.left[n:]
	return n, nil
}

// WriteTo writes the rest of the data to w without copying it through a
// buffer of io.Copy's. Like Read, it succeeds only if the file verifies.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for {
		if len(r.left) > 0 {
			k, err := w.Write(r.left)
			n += int64(k)
			r.left = r.left[k:]
			if err != nil {
				return n, err
			}
			continue
		}
		if r.err == io.EOF {
			return n, nil
		}
		if r.err != nil {
			return n, r.err
		}
		r.next()
	}
}

// next loads the next chunk into r.left, or sets r.err (io.EOF at a
// verified end).
func (r *Reader) next() {
	off := r.rd.Offset()
	typ, p, err := r.rd.Next()
	switch {
	case err == io.EOF:
		r.err = r.finish()
		return
	case err != nil:
	case typ != typeData:
		err = fmt.Errorf("%w: unexpected record type %d", wal.ErrCorrupt, typ)
	case r.got+uint64(len(p)) > r.size:
		err = fmt.Errorf("%w: more data than the %d bytes announced", wal.ErrCorrupt, r.size)
	}
	if err != nil {
		r.err = fmt.Errorf("snap: %s: data at offset %d: %w", r.name, off, damaged(err))
		return
	}
	r.got += uint64(len(p))
	r.crc = crc32.Update(r.crc, castagnoli, p)
	r.left = p
}

func (r *Reader) finish() error {
	switch {
	case r.got != r.size:
		return fmt.Errorf("snap: %s: %w: data ends after %d of %d bytes", r.name, wal.ErrCorrupt, r.got, r.size)
	case !r.v1 && r.crc != r.sum:
		return fmt.Errorf("snap: %s: %w: data checksum mismatch (stored %08x, computed %08x)", r.name, wal.ErrCorrupt, r.sum, r.crc)
	}
	return io.EOF
}

// Close closes the file.
func (r *Reader) Close() error {
	if r.c == nil {
		return nil
	}
	return r.c.Close()
}

// damaged makes a truncated record a corruption too: a snapshot file is
// never legitimately cut short (it is renamed into place only when whole).
func damaged(err error) error {
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return fmt.Errorf("%w: record cut short", wal.ErrCorrupt)
	}
	return err
}

// verify reads the whole snapshot at index and term, checking everything,
// and returns its metadata.
func (d *Dir) verify(index, term uint64) (raftpb.SnapshotMetadata, error) {
	r, err := d.Open(index, term)
	if err != nil {
		return raftpb.SnapshotMetadata{}, err
	}
	defer r.Close()
	if _, err := r.WriteTo(io.Discard); err != nil {
		return raftpb.SnapshotMetadata{}, err
	}
	return r.meta, nil
}

// Newest returns the metadata of the newest snapshot whose file passes
// every check, and ok false if there is none. Files that fail are logged
// and renamed with a ".broken" suffix so they are not read again.
func (d *Dir) Newest() (meta raftpb.SnapshotMetadata, ok bool, err error) {
	names, err := d.fs.List(d.dir)
	if err != nil {
		return meta, false, fmt.Errorf("snap: list %s: %w", d.dir, err)
	}
	for i := len(names) - 1; i >= 0; i-- {
		index, term, valid := parseName(names[i])
		if !valid {
			continue
		}
		m, err := d.verify(index, term)
		if err == nil {
			return m, true, nil
		}
		if !errors.Is(err, wal.ErrCorrupt) {
			return meta, false, err
		}
		path := d.path(index, term)
		d.logger.Warn("snap: skipping damaged snapshot file", "file", path, "error", err.Error())
		if err := d.fs.Rename(path, path+brokenExt); err != nil {
			return meta, false, fmt.Errorf("snap: set aside %s: %w", path, err)
		}
	}
	return meta, false, nil
}

// RemoveExcept deletes every snapshot file but the one with the given index
// and term. Files being written or staged are left alone.
func (d *Dir) RemoveExcept(index, term uint64) error {
	names, err := d.fs.List(d.dir)
	if err != nil {
		return fmt.Errorf("snap: list %s: %w", d.dir, err)
	}
	keep := Name(index, term)
	for _, n := range names {
		if _, _, ok := parseName(n); ok && n != keep {
			if err := d.fs.Remove(filepath.Join(d.dir, n)); err != nil {
				return fmt.Errorf("snap: remove %s: %w", filepath.Join(d.dir, n), err)
			}
		}
	}
	return nil
}
