package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/google/btree"
)

// The snapshot format, streamed:
//
//	magic "RKVS", version byte
//	applied index                        uvarint
//	key count, then per key in ascending order:
//	    key, value                       uvarint length + bytes each
//	session count, then per session in ascending ClientID order:
//	    client id, seq, last index       uvarint each
//	    result: error code byte, found byte, int (zig-zag varint), value
//	CRC-32C of all the bytes above      4 bytes, big endian
//
// Everything is written in a canonical order, so replicas with the same
// state write byte-identical snapshots.
const (
	snapshotMagic   = "RKVS"
	snapshotVersion = 1
	// snapshotChunk is how many bytes the writer gathers before it hashes
	// and writes them; larger values go straight through.
	snapshotChunk = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checkpoint is a frozen view of a Store, taken in O(1) by Store.Checkpoint.
// It is safe to use from any goroutine while the store keeps applying, and
// it can be written any number of times. It keeps the store's memory of the
// moment alive, so drop it once written.
type Checkpoint struct {
	index    uint64
	tree     *btree.BTreeG[item]
	sessions *btree.BTreeG[*session]
}

var _ io.WriterTo = (*Checkpoint)(nil)

// Checkpoint freezes the current state. The runtime calls it on the apply
// goroutine right after applying the entry a snapshot should cover, then
// writes the checkpoint elsewhere while applying continues.
func (s *Store) Checkpoint() *Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Clone marks the trees' nodes shared, a write: hence the exclusive lock.
	return &Checkpoint{index: s.applied, tree: s.tree.Clone(), sessions: s.sessions.byClient.Clone()}
}

// Index returns the applied index the checkpoint covers.
func (c *Checkpoint) Index() uint64 { return c.index }

// Snapshot writes the whole current state to w: Checkpoint().WriteTo(w).
// It blocks Apply only for the O(1) clone.
func (s *Store) Snapshot(w io.Writer) error {
	_, err := s.Checkpoint().WriteTo(w)
	return err
}

// WriteTo streams the checkpoint to w in the snapshot format.
func (c *Checkpoint) WriteTo(w io.Writer) (int64, error) {
	e := snapWriter{w: w, buf: make([]byte, 0, snapshotChunk+2*binary.MaxVarintLen64)}
	e.buf = append(e.buf, snapshotMagic...)
	e.buf = append(e.buf, snapshotVersion)
	e.uvarint(c.index)
	e.uvarint(uint64(c.tree.Len()))
	c.tree.Ascend(func(it item) bool {
		e.bytes(it.key)
		e.bytes(it.value)
		return e.err == nil
	})
	e.uvarint(uint64(c.sessions.Len()))
	c.sessions.Ascend(func(s *session) bool {
		e.uvarint(s.client)
		e.uvarint(s.seq)
		e.uvarint(s.last)
		e.result(&s.result)
		return e.err == nil
	})
	e.flush()
	if e.err == nil {
		e.write(binary.BigEndian.AppendUint32(nil, e.crc))
	}
	if e.err != nil {
		return e.n, fmt.Errorf("kv: write snapshot at %d: %w", c.index, e.err)
	}
	return e.n, nil
}

// snapWriter gathers small fields into chunks, hashing what it writes and
// remembering the first write error.
type snapWriter struct {
	w   io.Writer
	buf []byte
	crc uint32
	n   int64
	err error
}

func (e *snapWriter) write(p []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(p)
	e.n += int64(n)
	e.err = err
}

func (e *snapWriter) flush() {
	e.crc = crc32.Update(e.crc, castagnoli, e.buf)
	e.write(e.buf)
	e.buf = e.buf[:0]
}

func (e *snapWriter) uvarint(x uint64) {
	e.buf = binary.AppendUvarint(e.buf, x)
	if len(e.buf) >= snapshotChunk {
		e.flush()
	}
}

func (e *snapWriter) bytes(p []byte) {
	e.uvarint(uint64(len(p)))
	if len(p) >= snapshotChunk {
		e.flush()
		e.crc = crc32.Update(e.crc, castagnoli, p)
		e.write(p)
		return
	}
	e.buf = append(e.buf, p...)
	if len(e.buf) >= snapshotChunk {
		e.flush()
	}
}

// result writes the fields a write command's result can have; read
// results, with lists, are never remembered.
func (e *snapWriter) result(r *Result) {
	err, _ := r.Err.(*Error) // always, as only this package makes Results
	code := errorCode(err)
	found := byte(0)
	if r.Value.Found {
		found = 1
	}
	e.buf = append(e.buf, code, found)
	e.uvarint(zigzag(r.Int))
	e.bytes(r.Value.Data)
}

// Restore replaces the store's whole state with the snapshot read from r,
// which must end with it. It verifies the snapshot (structure, limits,
// order, checksum) before touching the store: on any error the old state
// is intact. Errors about the bytes wrap ErrCorrupt; errors of r are
// returned wrapped as they are.
//
// Restore may move the applied index backwards; the consensus layer only
// installs snapshots newer than what was applied.
func (s *Store) Restore(r io.Reader) error {
	d := snapReader{r: bufio.NewReaderSize(r, snapshotChunk)}
	tree, applied, sessions := d.snapshot(s.limits)
	if d.err != nil {
		return fmt.Errorf("kv: restore snapshot: %w", d.err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tree, s.applied, s.sessions = tree, applied, sessions
	return nil
}

// snapReader parses a snapshot stream, hashing what it consumes and
// remembering the first error.
type snapReader struct {
	r   *bufio.Reader
	off int64
	crc uint32
	one [1]byte
	err error
}

func (d *snapReader) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrCorrupt, d.off, fmt.Sprintf(format, args...))
	}
}

// readErr records an error of the underlying reader; running out of bytes
// means the snapshot is truncated.
func (d *snapReader) readErr(err error) {
	switch {
	case d.err != nil:
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		d.fail("truncated")
	default:
		d.err = fmt.Errorf("read at byte %d: %w", d.off, err)
	}
}

// ReadByte implements io.ByteReader for binary.ReadUvarint; it records
// errors of the underlying reader.
func (d *snapReader) ReadByte() (byte, error) {
	b, err := d.r.ReadByte()
	if err != nil {
		d.readErr(err)
		return 0, err
	}
	d.off++
	d.one[0] = b
	d.crc = crc32.Update(d.crc, castagnoli, d.one[:])
	return b, nil
}

func (d *snapReader) byte() byte {
	if d.err != nil {
		return 0
	}
	b, _ := d.ReadByte()
	return b
}

func (d *snapReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d)
	if err != nil {
		d.fail("bad varint") // unless ReadByte recorded a read error
	}
	return v
}

// full reads exactly len(p) bytes into p.
func (d *snapReader) full(p []byte) {
	if d.err != nil {
		return
	}
	n, err := io.ReadFull(d.r, p)
	d.off += int64(n)
	if err != nil {
		d.readErr(err)
		return
	}
	d.crc = crc32.Update(d.crc, castagnoli, p)
}

// length reads a byte-string length and checks it against max before
// anything is allocated.
func (d *snapReader) length(max int, what string) int {
	n := d.uvarint()
	if n > uint64(max) {
		d.fail("%s of %d bytes exceeds the limit of %d", what, n, max)
		return 0
	}
	return int(n)
}

func (d *snapReader) snapshot(limits sessionLimits) (*btree.BTreeG[item], uint64, sessionTable) {
	var magic [len(snapshotMagic) + 1]byte
	d.full(magic[:])
	if d.err == nil && (string(magic[:len(snapshotMagic)]) != snapshotMagic || magic[len(snapshotMagic)] != snapshotVersion) {
		d.fail("not a version %d snapshot (header %q)", snapshotVersion, magic[:])
	}
	applied := d.uvarint()
	tree := d.items()
	sessions := d.sessions(limits, applied)
	sum := d.crc
	var trailer [4]byte
	d.full(trailer[:])
	if d.err != nil {
		return nil, 0, sessionTable{}
	}
	if got := binary.BigEndian.Uint32(trailer[:]); got != sum {
		d.fail("checksum mismatch: stored %#08x, computed %#08x", got, sum)
	} else if _, err := d.r.ReadByte(); err == nil {
		d.fail("data after the checksum")
	} else if err != io.EOF {
		d.readErr(err)
	}
	if d.err != nil {
		return nil, 0, sessionTable{}
	}
	return tree, applied, sessions
}

// items reads the key space; keys must be strictly ascending.
func (d *snapReader) items() *btree.BTreeG[item] {
	tree := newTree()
	var prev, key []byte
	for i, n := uint64(0), d.uvarint(); i < n && d.err == nil; i++ {
		klen := d.length(MaxKeySize, "key")
		// Read the key into a scratch buffer first: key and value then
		// share one allocation, as Store.putLocked lays them out.
		key = slices.Grow(key[:0], klen)[:klen]
		d.full(key)
		vlen := d.length(MaxValueSize, "value")
		if d.err != nil {
			break
		}
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			d.fail("key %d out of order", i)
			break
		}
		buf := make([]byte, klen+vlen)
		copy(buf, key)
		d.full(buf[klen:])
		it := item{key: buf[:klen:klen], value: buf[klen:]}
		tree.ReplaceOrInsert(it)
		prev = it.key
	}
	return tree
}

// sessions reads the session table; client ids must be strictly
// ascending and the table within limits.
func (d *snapReader) sessions(limits sessionLimits, applied uint64) sessionTable {
	t := newSessionTable(limits)
	n := d.uvarint()
	if n > uint64(limits.count) {
		d.fail("%d sessions exceed the limit of %d", n, limits.count)
	}
	var prev uint64
	for i := uint64(0); i < n && d.err == nil; i++ {
		s := &session{client: d.uvarint(), seq: d.uvarint(), last: d.uvarint()}
		code, found := d.byte(), d.byte()
		e, known := errorByCode(code)
		s.result.Int = unzigzag(d.uvarint())
		data := make([]byte, d.length(MaxValueSize, "remembered value"))
		d.full(data)
		switch {
		case d.err != nil:
		case s.client <= prev:
			d.fail("session %d: client id %d not above %d", i, s.client, prev)
		case s.seq == 0 || s.last == 0 || s.last > applied:
			d.fail("session %d: seq %d, last index %d outside [1, %d]", i, s.seq, s.last, applied)
		case !known || found > 1 || (found == 0 && len(data) > 0):
			d.fail("session %d: bad result (error code %d, found %d)", i, code, found)
		case t.bytes+sessionOverhead+len(data) > limits.bytes:
			d.fail("sessions exceed the limit of %d bytes", limits.bytes)
		}
		if d.err != nil {
			break
		}
		if e != nil {
			s.result.Err = e
		}
		if found == 1 {
			s.result.Value = Value{Data: data, Found: true}
		}
		t.put(s)
		prev = s.client
	}
	return t
}
