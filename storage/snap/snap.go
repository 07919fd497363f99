// Package snap keeps raft snapshots on disk: one checksummed file per
// snapshot, written atomically (temporary name, fsync, rename, directory
// fsync), named by index and term so the newest sorts last.
//
// A file is a sequence of records in the WAL's framing (length, type,
// CRC-32C, payload): first the metadata,
//
//	magic "raftkvsn" | version 1 | data length uint64 LE | raftpb.SnapshotMetadata
//
// then the data in chunks of at most 1 MiB, and nothing after. A file that
// is short, long or fails a checksum is not a snapshot.
package snap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/internal/vfs"
	"github.com/raftkv/raftkv/storage/wal"
)

const (
	magic     = "raftkvsn"
	version   = 1
	typeMeta  = 1
	typeData  = 2
	chunkSize = 1 << 20
	ext       = ".snap"
	// brokenExt marks a file that failed its checks, kept for a human
	// to look at rather than deleted.
	brokenExt = ".broken"
)

// Options configure a Dir.
type Options struct {
	// FS is the file system; nil means the operating system's.
	FS vfs.FS
	// Logger receives warnings about damaged snapshot files; nil discards.
	Logger *slog.Logger
	// NoSync skips every fsync (tests and benchmarks only).
	NoSync bool
}

// Dir is a directory of snapshot files. Its methods may be called
// concurrently, but two Saves of the same snapshot must not overlap.
type Dir struct {
	fs     vfs.FS
	dir    string
	logger *slog.Logger
	sync   bool
}

// Open prepares dir, creating it if needed and removing leftovers of
// interrupted saves.
func Open(dir string, opts Options) (*Dir, error) {
	d := &Dir{fs: opts.FS, dir: dir, logger: opts.Logger, sync: !opts.NoSync}
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

// Save writes s durably. When it returns, the file is complete, synced and
// visible under its final name.
func (d *Dir) Save(s raftpb.Snapshot) error {
	path := d.path(s.Metadata.Index, s.Metadata.Term)
	f, err := vfs.WriteNew(d.fs, path, d.sync, func(w io.Writer) error { return Encode(w, s) })
	if err != nil {
		return fmt.Errorf("snap: save %s: %w", path, err)
	}
	return f.Close()
}

// Encode writes the file format of s to w.
func Encode(w io.Writer, s raftpb.Snapshot) error {
	head := []byte(magic)
	head = append(head, version)
	head = binary.LittleEndian.AppendUint64(head, uint64(len(s.Data)))
	head = s.Metadata.MarshalAppend(head)
	if len(head) > wal.MaxRecordSize {
		return fmt.Errorf("snapshot metadata of %d bytes is too large", len(head))
	}
	buf := wal.AppendRecord(make([]byte, 0, chunkSize+wal.FrameSize), typeMeta, head)
	for data := s.Data; len(data) > 0; {
		n := min(len(data), chunkSize)
		buf = wal.AppendRecord(buf, typeData, data[:n])
		data = data[n:]
		if _, err := w.Write(buf); err != nil {
			return err
		}
		buf = buf[:0]
	}
	_, err := w.Write(buf)
	return err
}

// Decode reads a snapshot file of size bytes. With keepData false it only
// verifies the data, so the check needs no memory for it. Every error
// wraps wal.ErrCorrupt or is an I/O error.
func Decode(r io.ReaderAt, size int64, keepData bool) (raftpb.Snapshot, error) {
	var s raftpb.Snapshot
	rd := wal.NewReader(r, 0, size)
	typ, p, err := rd.Next()
	if err == nil && (typ != typeMeta || len(p) < len(magic)+9 || string(p[:len(magic)]) != magic) {
		err = fmt.Errorf("%w: not a snapshot file", wal.ErrCorrupt)
	}
	if err == nil && p[len(magic)] != version {
		err = fmt.Errorf("%w: unsupported snapshot version %d", wal.ErrCorrupt, p[len(magic)])
	}
	if err != nil {
		return s, fmt.Errorf("metadata at offset 0: %w", damaged(err))
	}
	dataLen := binary.LittleEndian.Uint64(p[len(magic)+1:])
	if s.Metadata, err = raftpb.UnmarshalSnapshotMetadata(p[len(magic)+9:]); err != nil {
		return s, fmt.Errorf("metadata at offset 0: %w: %w", wal.ErrCorrupt, err)
	}
	if dataLen > uint64(size) {
		return s, fmt.Errorf("%w: metadata claims %d bytes of data in a %d byte file", wal.ErrCorrupt, dataLen, size)
	}
	if keepData && dataLen > 0 {
		s.Data = make([]byte, 0, dataLen)
	}
	var got uint64
	for {
		off := rd.Offset()
		typ, p, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err == nil && typ != typeData {
			err = fmt.Errorf("%w: unexpected record type %d", wal.ErrCorrupt, typ)
		}
		if err == nil && got+uint64(len(p)) > dataLen {
			err = fmt.Errorf("%w: more data than the %d bytes announced", wal.ErrCorrupt, dataLen)
		}
		if err != nil {
			return s, fmt.Errorf("data at offset %d: %w", off, damaged(err))
		}
		got += uint64(len(p))
		if keepData {
			s.Data = append(s.Data, p...)
		}
	}
	if got != dataLen {
		return s, fmt.Errorf("%w: file ends after %d of %d bytes of data", wal.ErrCorrupt, got, dataLen)
	}
	return s, nil
}

// damaged makes a truncated record a corruption too: a snapshot file is
// never legitimately cut short (it is renamed into place only when whole).
func damaged(err error) error {
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return fmt.Errorf("%w: record cut short", wal.ErrCorrupt)
	}
	return err
}

// read reads the file of the snapshot at index and term.
func (d *Dir) read(index, term uint64, keepData bool) (raftpb.Snapshot, error) {
	path := d.path(index, term)
	f, size, err := vfs.OpenSized(d.fs, path)
	if err != nil {
		return raftpb.Snapshot{}, fmt.Errorf("snap: %w", err)
	}
	defer f.Close()
	s, err := Decode(f, size, keepData)
	if err == nil && (s.Metadata.Index != index || s.Metadata.Term != term) {
		err = fmt.Errorf("%w: holds snapshot %d/%d", wal.ErrCorrupt, s.Metadata.Index, s.Metadata.Term)
	}
	if err != nil {
		return s, fmt.Errorf("snap: %s: %w", path, err)
	}
	return s, nil
}

// Load reads the snapshot with the given index and term, data included.
// If the file is gone (a newer snapshot replaced it) the error wraps
// fs.ErrNotExist.
func (d *Dir) Load(index, term uint64) (raftpb.Snapshot, error) {
	return d.read(index, term, true)
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
		s, err := d.read(index, term, false)
		if err == nil {
			return s.Metadata, true, nil
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
// and term.
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
