package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// RecordType tells a record's reader how to decode its payload. Zero is
// never written, so a zero-filled region never decodes as a record; types
// from 0xF0 up are reserved for the WAL's own bookkeeping.
type RecordType uint8

// MaxUserType is the largest RecordType callers may write.
const MaxUserType RecordType = 0xEF

const (
	typeSegmentHeader RecordType = 0xFF
	typeSeal          RecordType = 0xFE
)

// A record on disk is a 9-byte frame header followed by the payload:
//
//	offset 0  uint32 little-endian  payload length
//	offset 4  uint8                 record type
//	offset 5  uint32 little-endian  CRC-32C of bytes 0..4 and the payload
//
// The checksum covers the length and type as well as the payload, so a
// damaged header is caught too, not just a damaged body.
const (
	FrameSize = 9
	// MaxRecordSize bounds a payload, so that a corrupt length can never
	// make a reader allocate more than this.
	MaxRecordSize = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error about data that fails its checks:
// bad checksums, impossible lengths, unknown types, missing segments.
var ErrCorrupt = errors.New("corrupt")

// AppendRecord appends the framed record to dst. It panics if payload
// exceeds MaxRecordSize: callers check sizes where they can report them.
func AppendRecord(dst []byte, typ RecordType, payload []byte) []byte {
	if len(payload) > MaxRecordSize {
		panic(fmt.Sprintf("wal: record payload of %d bytes exceeds the %d byte limit", len(payload), MaxRecordSize))
	}
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, byte(typ), 0, 0, 0, 0)
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[start+5:], frameCRC(dst[start:start+5], dst[start+FrameSize:]))
	return dst
}

func frameCRC(head, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, payload)
}

// frame is a decoded frame header.
type frame struct {
	length uint32
	typ    RecordType
	crc    uint32
}

func parseFrame(b []byte) (frame, error) {
	f := frame{
		length: binary.LittleEndian.Uint32(b),
		typ:    RecordType(b[4]),
		crc:    binary.LittleEndian.Uint32(b[5:]),
	}
	switch {
	case f.typ == 0:
		return f, fmt.Errorf("%w: record type 0 (zeroed or never written)", ErrCorrupt)
	case f.length > MaxRecordSize:
		return f, fmt.Errorf("%w: record length %d exceeds the %d byte limit", ErrCorrupt, f.length, MaxRecordSize)
	}
	return f, nil
}

func (f frame) check(head, payload []byte) error {
	if got := frameCRC(head[:5], payload); got != f.crc {
		return fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, f.crc, got)
	}
	return nil
}

// DecodeRecord decodes the record at the start of b. The payload aliases b;
// n is the number of bytes the record occupies. An incomplete record gives
// io.ErrUnexpectedEOF (and io.EOF for empty input); anything else that is
// wrong wraps ErrCorrupt.
func DecodeRecord(b []byte) (typ RecordType, payload []byte, n int, err error) {
	if len(b) == 0 {
		return 0, nil, 0, io.EOF
	}
	if len(b) < FrameSize {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	f, err := parseFrame(b)
	if err != nil {
		return 0, nil, 0, err
	}
	end := FrameSize + int(f.length)
	if len(b) < end {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	if err := f.check(b, b[FrameSize:end]); err != nil {
		return 0, nil, 0, err
	}
	return f.typ, b[FrameSize:end], end, nil
}

// Reader reads records one after another from a file region, checking
// each one.
type Reader struct {
	r        *bufio.Reader
	off, end int64
	buf      []byte
}

// NewReader returns a Reader of the records in r from offset off up to end.
// Knowing where the data ends lets it reject a corrupt length before
// allocating anything for it.
func NewReader(r io.ReaderAt, off, end int64) *Reader {
	return &Reader{r: bufio.NewReaderSize(io.NewSectionReader(r, off, end-off), 64<<10), off: off, end: end}
}

// Offset returns the offset of the next record.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next record. The payload is valid until the next call.
// At the clean end of the data it returns io.EOF; a record cut short gives
// io.ErrUnexpectedEOF, and anything else wrong wraps ErrCorrupt. After an
// error other than io.EOF the Reader must not be used again.
func (r *Reader) Next() (RecordType, []byte, error) {
	left := r.end - r.off
	if left == 0 {
		return 0, nil, io.EOF
	}
	if left < FrameSize {
		return 0, nil, io.ErrUnexpectedEOF
	}
	var head [FrameSize]byte
	if _, err := io.ReadFull(r.r, head[:]); err != nil {
		return 0, nil, fmt.Errorf("read record header at offset %d: %w", r.off, noEOF(err))
	}
	f, err := parseFrame(head[:])
	if err != nil {
		return 0, nil, err
	}
	if int64(f.length) > left-FrameSize {
		return 0, nil, io.ErrUnexpectedEOF
	}
	if cap(r.buf) < int(f.length) {
		r.buf = make([]byte, f.length)
	}
	payload := r.buf[:f.length]
	if _, err := io.ReadFull(r.r, payload); err != nil {
		return 0, nil, fmt.Errorf("read record payload at offset %d: %w", r.off, noEOF(err))
	}
	if err := f.check(head[:], payload); err != nil {
		return 0, nil, err
	}
	r.off += FrameSize + int64(f.length)
	return f.typ, payload, nil
}

// noEOF turns an end of file inside a region whose size was known into the
// I/O error it is (the file shrank under us), so it is not mistaken for a
// torn record.
func noEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errFileShrank
	}
	return err
}

var errFileShrank = errors.New("file shrank while being read")
