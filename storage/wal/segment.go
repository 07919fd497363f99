package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A segment file is named after its sequence number and starts with a
// header record, then the caller's opening records (written together with the
// header and synced before the file got its name, so they are never torn):
//
//	header payload: magic "raftkvwl" | version 1 | seq uint64 LE | openEnd uint64 LE
//
// openEnd is the offset just past the opening records. When the next segment
// has been created, a seal record (payload: the next seq, uint64 LE) closes
// the segment, so that a missing last segment is noticed.
const (
	segmentMagic      = "raftkvwl"
	segmentVersion    = 1
	headerPayloadSize = 8 + 1 + 8 + 8 // magic, version, seq, openEnd
	headerSize        = FrameSize + headerPayloadSize
	segmentExt        = ".wal"
)

func segmentName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segmentExt) }

// parseSegmentName returns the sequence number of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	seq, err := strconv.ParseUint(hex, 16, 64)
	return seq, err == nil
}

func appendHeader(dst []byte, seq uint64, openEnd int64) []byte {
	p := make([]byte, 0, headerPayloadSize)
	p = append(p, segmentMagic...)
	p = append(p, segmentVersion)
	p = binary.LittleEndian.AppendUint64(p, seq)
	p = binary.LittleEndian.AppendUint64(p, uint64(openEnd))
	return AppendRecord(dst, typeSegmentHeader, p)
}

func sealRecord(seq uint64) []byte {
	return AppendRecord(nil, typeSeal, binary.LittleEndian.AppendUint64(nil, seq+1))
}

// segmentScan is what reading one segment found.
type segmentScan struct {
	seq     uint64 // from the header
	openEnd int64
	// end is the offset just past the last good record.
	end int64
	// sealed: the last good record is the seal.
	sealed bool
	// damage says what is wrong with the bytes at end, or is nil if the
	// segment ends cleanly there.
	damage error
	// intactAfter is the offset of an intact record found after the
	// damage, or -1: a torn write leaves nothing intact behind it.
	intactAfter int64
}

// scanSegment reads a segment of size bytes, calling visit with the offset,
// type and payload of every record after the header (the payload is only
// valid during the call). Damage to the records is reported in the result,
// for the caller to judge; an error means the header is bad, visit failed,
// or the file could not be read.
func scanSegment(r io.ReaderAt, size int64, visit func(off int64, typ RecordType, payload []byte) error) (segmentScan, error) {
	s := segmentScan{intactAfter: -1}
	rd := NewReader(r, 0, size)
	typ, p, err := rd.Next()
	if err == nil && (typ != typeSegmentHeader || len(p) != headerPayloadSize || string(p[:len(segmentMagic)]) != segmentMagic) {
		err = fmt.Errorf("%w: not a segment header", ErrCorrupt)
	}
	if err == nil && p[len(segmentMagic)] != segmentVersion {
		err = fmt.Errorf("%w: unsupported segment version %d", ErrCorrupt, p[len(segmentMagic)])
	}
	if err != nil {
		if !isDamage(err) {
			return s, err
		}
		return s, fmt.Errorf("%w: segment header at offset 0: %w", ErrCorrupt, err)
	}
	s.seq = binary.LittleEndian.Uint64(p[len(segmentMagic)+1:])
	s.openEnd = int64(binary.LittleEndian.Uint64(p[len(segmentMagic)+9:]))
	if s.openEnd < headerSize || s.openEnd > size {
		return s, fmt.Errorf("%w: segment header at offset 0: opening records end at %d, outside the %d byte file", ErrCorrupt, s.openEnd, size)
	}
	for {
		off := rd.Offset()
		typ, p, err := rd.Next()
		if err == io.EOF {
			s.end = off
			return s, nil
		}
		if err == nil && s.sealed {
			err = fmt.Errorf("%w: record after the seal", ErrCorrupt)
		}
		if err == nil && typ == typeSegmentHeader {
			err = fmt.Errorf("%w: second segment header", ErrCorrupt)
		}
		if err != nil {
			if !isDamage(err) {
				return s, err
			}
			s.end, s.damage = off, err
			s.intactAfter, err = findIntact(r, off+1, size)
			return s, err
		}
		switch typ {
		case typeSeal:
			if len(p) != 8 || binary.LittleEndian.Uint64(p) != s.seq+1 {
				s.end, s.damage = off, fmt.Errorf("%w: bad seal record", ErrCorrupt)
				return s, nil
			}
			s.sealed = true
		default:
			if err := visit(off, typ, p); err != nil {
				return s, fmt.Errorf("offset %d: %w", off, err)
			}
		}
	}
}

// isDamage reports whether err describes the bytes read rather than a
// failure to read them.
func isDamage(err error) bool {
	return errors.Is(err, ErrCorrupt) || err == io.ErrUnexpectedEOF
}

// findIntact returns the offset of the first intact record (a plausible
// frame whose checksum matches) starting anywhere in [from, size), or -1.
func findIntact(r io.ReaderAt, from, size int64) (int64, error) {
	// The file is read a window at a time, so memory is bounded by the
	// largest record rather than by the file: a record starting in the
	// first step bytes of a window lies wholly inside it.
	const step = FrameSize + MaxRecordSize
	buf := make([]byte, max(0, min(size-from, 2*step)))
	for start := from; start < size; start += step {
		win := buf[:min(int64(len(buf)), size-start)]
		if _, err := r.ReadAt(win, start); err != nil {
			return -1, fmt.Errorf("read from offset %d: %w", start, noEOF(err))
		}
		for i := 0; i < step && i+FrameSize <= len(win); i++ {
			if win[i+4] == 0 {
				continue // cheap rejection of zero-filled space
			}
			if _, _, _, err := DecodeRecord(win[i:]); err == nil {
				return start + int64(i), nil
			}
		}
	}
	return -1, nil
}

// isTornSeal reports whether tail is what a seal write cut short leaves:
// a prefix of the seal record, possibly followed by zeros.
func isTornSeal(tail, seal []byte) bool {
	if len(tail) > len(seal) {
		return false
	}
	k := 0
	for k < len(tail) && tail[k] == seal[k] {
		k++
	}
	return len(bytes.Trim(tail[k:], "\x00")) == 0
}
