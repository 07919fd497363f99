// Package wal is a segmented write-ahead log of typed, checksummed records.
//
// The log is a directory of segment files named by sequence number. Records
// are only ever appended to the newest segment; Cut starts a new one and
// DetachBefore and RemoveDetached delete old ones. The WAL knows nothing of what records mean:
// its caller gives each a type and decodes the payload when Open replays the
// log.
//
// # Recovery rule
//
// Open reads every segment and verifies every record's checksum. Damage is
// tolerated in exactly one place: the tail of the last segment, where a
// crash can leave a write half done. There, the first record that is cut
// short, zero-filled or fails its checksum, if no intact record follows it
// anywhere in the file, is a torn write: the file is truncated at its
// offset and a warning names the file and offset. Everything else refuses to
// open with an error wrapping ErrCorrupt that names the file, the offset and
// the problem:
//
//   - damage in any segment but the last (it was complete and synced
//     before the next one was created), except a seal record cut short;
//   - damage in the last segment followed by an intact record (a crash
//     tears only the end, so this is decay, not a torn write, and the intact
//     record may have been acknowledged);
//   - damage to a segment's header or opening records (synced before the
//     file was given its name);
//   - a gap in the sequence numbers, a header that disagrees with its file
//     name, or a last segment that is sealed (its successor is missing).
//
// Dropping data that may have been acknowledged is never silent.
//
// # Concurrency
//
// A WAL has one writer: Write, Sync, Cut, RemoveBefore and Close must not run
// concurrently with each other. ReadFrom only needs the directory and may run
// at any time, from any goroutine.
package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/raftkv/raftkv/storage/internal/vfs"
)

// Options configure a WAL.
type Options struct {
	// FS is the file system; nil means the operating system's.
	FS vfs.FS
	// Logger receives warnings, such as a torn tail cut off; nil discards.
	Logger *slog.Logger
	// NoSync skips every fsync. Only for tests and benchmarks: a crash
	// then loses acknowledged writes.
	NoSync bool
}

// Pos is where a record starts.
type Pos struct {
	Seq uint64 // segment
	Off int64  // byte offset in the segment
}

func (p Pos) String() string { return fmt.Sprintf("%s offset %d", segmentName(p.Seq), p.Off) }

// ErrNoSegment is returned by Write before the first Cut.
var ErrNoSegment = errors.New("wal: no segment: call Cut first")

// WAL is an open write-ahead log. See the package comment for which methods
// may run concurrently.
type WAL struct {
	fs     vfs.FS
	dir    string
	logger *slog.Logger
	sync   bool

	seqs []uint64 // live segments, oldest first; the last is being written
	f    vfs.File // the last segment, open for appending; nil before the first Cut
	size int64    // bytes in the last segment

	// err is the first write or sync failure. After one, what reached the
	// disk is unknown, so every later write fails too.
	err error
}

// Batch collects records to be written with one Write.
type Batch struct{ buf []byte }

// Reset empties b, keeping its memory.
func (b *Batch) Reset() { b.buf = b.buf[:0] }

// Len returns the encoded size of the records in b.
func (b *Batch) Len() int64 { return int64(len(b.buf)) }

// Add appends a record and returns its offset within the batch. Types
// above MaxUserType and payloads above MaxRecordSize are programming errors
// and panic; callers check sizes where they can report them.
func (b *Batch) Add(typ RecordType, payload []byte) int64 {
	if typ == 0 || typ > MaxUserType {
		panic(fmt.Sprintf("wal: record type %#x is reserved", typ))
	}
	off := int64(len(b.buf))
	b.buf = AppendRecord(b.buf, typ, payload)
	return off
}

// Open opens the log in dir, creating the directory if needed, and replays
// it: visit is called with every record in order (the payload is only valid
// during the call). An error from visit stops Open and is returned wrapped
// with the record's file and offset. See the package comment for how damage
// is handled. An empty log has no segment: call Cut before writing.
func Open(dir string, opts Options, visit func(pos Pos, typ RecordType, payload []byte) error) (*WAL, error) {
	w := &WAL{fs: opts.FS, dir: dir, logger: opts.Logger, sync: !opts.NoSync}
	if w.fs == nil {
		w.fs = vfs.OS{}
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	names, err := vfs.PrepareDir(w.fs, dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	for _, name := range names {
		if seq, ok := parseSegmentName(name); ok {
			w.seqs = append(w.seqs, seq)
		}
	}
	for i := 1; i < len(w.seqs); i++ {
		if w.seqs[i] != w.seqs[i-1]+1 {
			return nil, fmt.Errorf("wal: %w: segment %s is missing between %s and %s",
				ErrCorrupt, segmentName(w.seqs[i-1]+1), w.segPath(w.seqs[i-1]), w.segPath(w.seqs[i]))
		}
	}
	for i, seq := range w.seqs {
		if err := w.replay(seq, i == len(w.seqs)-1, visit); err != nil {
			if w.f != nil {
				_ = w.f.Close()
			}
			return nil, err
		}
	}
	return w, nil
}

func (w *WAL) path(name string) string   { return filepath.Join(w.dir, name) }
func (w *WAL) segPath(seq uint64) string { return w.path(segmentName(seq)) }
func corrupt(path string, off int64, format string, args ...any) error {
	return fmt.Errorf("wal: %s offset %d: %w: %s", path, off, ErrCorrupt, fmt.Sprintf(format, args...))
}

// replay reads one segment; the last one is left open for appending.
func (w *WAL) replay(seq uint64, last bool, visit func(Pos, RecordType, []byte) error) error {
	path := w.segPath(seq)
	f, size, err := vfs.OpenSized(w.fs, path)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	s, err := scanSegment(f, size, func(off int64, typ RecordType, p []byte) error {
		return visit(Pos{Seq: seq, Off: off}, typ, p)
	})
	if err != nil {
		return fmt.Errorf("wal: %s: %w", path, err)
	}
	if s.seq != seq {
		return corrupt(path, 0, "header names segment %d", s.seq)
	}
	switch {
	case s.damage == nil:
	case s.end < s.openEnd:
		return corrupt(path, s.end, "opening record damaged: %v", s.damage)
	case s.intactAfter >= 0:
		return corrupt(path, s.end, "%v, yet an intact record follows at offset %d, so this is not a torn write", s.damage, s.intactAfter)
	case !last:
		// Only a tail no longer than the seal can be a torn seal, so
		// nothing longer is read.
		seal := sealRecord(seq)
		tail := make([]byte, min(size-s.end, int64(len(seal))+1))
		if _, err := f.ReadAt(tail, s.end); err != nil {
			return fmt.Errorf("wal: read %s: %w", path, err)
		}
		if !isTornSeal(tail, seal) {
			return corrupt(path, s.end, "%v in a segment that is not the last", s.damage)
		}
		// The crash hit while the seal was being written after the next
		// segment was created: nothing was lost.
	}
	if last && s.sealed {
		return corrupt(path, s.end, "segment is sealed but its successor %s is missing", segmentName(seq+1))
	}
	if !last {
		return nil
	}
	if w.f, err = w.fs.OpenAppend(path); err != nil {
		return fmt.Errorf("wal: open %s for appending: %w", path, err)
	}
	w.size = size
	if s.damage != nil {
		w.logger.Warn("wal: cutting off a torn write at the end of the log",
			"file", path, "offset", s.end, "bytes", size-s.end, "problem", s.damage.Error())
		if err := w.f.Truncate(s.end); err != nil {
			return fmt.Errorf("wal: truncate %s at %d: %w", path, s.end, err)
		}
		if err := w.syncFile(); err != nil {
			return fmt.Errorf("wal: sync %s: %w", path, err)
		}
		w.size = s.end
	}
	return nil
}

func (w *WAL) syncFile() error {
	if !w.sync {
		return nil
	}
	return w.f.Sync()
}

// fail records the first write failure and returns it.
func (w *WAL) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// Seq returns the sequence number of the segment being written.
func (w *WAL) Seq() uint64 { return w.seqs[len(w.seqs)-1] }

// Size returns the size of the segment being written, or 0 before Cut.
func (w *WAL) Size() int64 { return w.size }

// Empty reports whether the log has no segment yet.
func (w *WAL) Empty() bool { return w.f == nil }

// Write appends the records of b to the current segment with one write
// and returns the position of the first. They are durable after Sync.
func (w *WAL) Write(b *Batch) (Pos, error) {
	if w.err != nil {
		return Pos{}, fmt.Errorf("wal: unusable after an earlier failure: %w", w.err)
	}
	if w.f == nil {
		return Pos{}, ErrNoSegment
	}
	pos := Pos{Seq: w.Seq(), Off: w.size}
	if _, err := w.f.Write(b.buf); err != nil {
		return Pos{}, w.fail(fmt.Errorf("wal: write %d bytes at %v: %w", len(b.buf), pos, err))
	}
	w.size += int64(len(b.buf))
	return pos, nil
}

// Sync makes everything written so far durable.
func (w *WAL) Sync() error {
	if w.err != nil {
		return fmt.Errorf("wal: unusable after an earlier failure: %w", w.err)
	}
	if w.f == nil {
		return nil
	}
	if err := w.syncFile(); err != nil {
		return w.fail(fmt.Errorf("wal: sync %s: %w", w.segPath(w.Seq()), err))
	}
	return nil
}

// Cut starts a new segment whose first records, after the header, are
// those of opening: they must say everything a reader starting at this
// segment needs to know. The new segment is complete and durable before it
// gets its name; then the previous segment is sealed. Everything written
// before Cut must already be synced.
func (w *WAL) Cut(opening *Batch) error {
	if w.err != nil {
		return fmt.Errorf("wal: unusable after an earlier failure: %w", w.err)
	}
	var seq uint64
	if w.f != nil {
		seq = w.Seq() + 1
	}
	buf := appendHeader(make([]byte, 0, headerSize+len(opening.buf)), seq, headerSize+opening.Len())
	buf = append(buf, opening.buf...)
	path := w.segPath(seq)
	f, err := vfs.WriteNew(w.fs, path, w.sync, func(out io.Writer) error {
		_, err := out.Write(buf)
		return err
	})
	if err != nil {
		return w.fail(fmt.Errorf("wal: create segment: %w", err))
	}
	if w.f != nil {
		// The seal only helps notice a lost last segment later; if it
		// cannot be written, the data is still safe but the log must
		// not be written any more.
		old := w.f
		_, err := old.Write(sealRecord(w.Seq()))
		if err == nil {
			err = w.syncFile()
		}
		if cerr := old.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = f.Close()
			return w.fail(fmt.Errorf("wal: seal %s: %w", w.segPath(w.Seq()), err))
		}
	}
	w.f, w.size = f, int64(len(buf))
	w.seqs = append(w.seqs, seq)
	return nil
}

// DetachBefore takes the segments older than seq out of the log and returns
// them, oldest first, for RemoveDetached. The segment being written is never
// detached. It only changes the WAL's bookkeeping: call it under whatever
// lock guards Write and Cut, and RemoveDetached after releasing it, since
// deleting large files can take long and a writer need not wait for it.
func (w *WAL) DetachBefore(seq uint64) []uint64 {
	n := 0
	for n < len(w.seqs)-1 && w.seqs[n] < seq {
		n++
	}
	detached := slices.Clone(w.seqs[:n])
	w.seqs = w.seqs[n:]
	return detached
}

// RemoveDetached deletes the segments DetachBefore returned, oldest first, so
// a crash midway still leaves a gapless log (a segment left behind is
// replayed harmlessly). It may run concurrently with Write, Cut and Sync.
func (w *WAL) RemoveDetached(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	for _, s := range seqs {
		if err := w.fs.Remove(w.segPath(s)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("wal: remove %s: %w", w.segPath(s), err)
		}
	}
	// Not needed for safety, but it keeps the space reclaimed after a
	// crash.
	if w.sync {
		if err := w.fs.SyncDir(w.dir); err != nil {
			return fmt.Errorf("wal: sync %s: %w", w.dir, err)
		}
	}
	return nil
}

// Segments returns the sequence numbers of the live segments, oldest first.
func (w *WAL) Segments() []uint64 { return append([]uint64(nil), w.seqs...) }

// ReadFrom calls fn with the records of segment pos.Seq from pos.Off on,
// skipping the WAL's own bookkeeping records, until fn returns false or an
// error, or the segment ends (io.EOF is then returned). It opens the file
// itself, so it is safe to call concurrently with anything; a segment
// removed meanwhile gives an error wrapping fs.ErrNotExist.
func (w *WAL) ReadFrom(pos Pos, fn func(pos Pos, typ RecordType, payload []byte) (bool, error)) error {
	path := w.segPath(pos.Seq)
	f, size, err := vfs.OpenSized(w.fs, path)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	rd := NewReader(f, pos.Off, size)
	for {
		off := rd.Offset()
		typ, p, err := rd.Next()
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			if isDamage(err) {
				return corrupt(path, off, "%v", err)
			}
			return fmt.Errorf("wal: read %s: %w", path, err)
		}
		if typ > MaxUserType {
			continue
		}
		more, err := fn(Pos{Seq: pos.Seq, Off: off}, typ, p)
		if err != nil || !more {
			return err
		}
	}
}

// Close closes the segment being written. It does not sync: callers sync
// whatever they acknowledge.
func (w *WAL) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
