package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/raftkv/raftkv/raft/raftpb"
)

const (
	// magic opens every handshake and answer, so that a stray client (an
	// HTTP probe, a redis-cli on the wrong port) is told apart from a peer
	// speaking another version.
	magic = "RKVT"
	// protocolVersion is the only handshake and framing version spoken.
	// Version 2 added the stream kind, when snapshots moved to streams of
	// their own.
	protocolVersion byte = 2

	handshakeSize   = len(magic) + 2 + 3*8
	answerSize      = len(magic) + 2
	frameHeaderSize = 4

	// readGrowStep bounds how far the frame buffer grows ahead of the bytes
	// actually received, so that a peer announcing a large frame and then
	// stalling holds little memory.
	readGrowStep = 1 << 20
	// readRetain is the largest frame buffer kept between frames; a rare
	// big frame (a snapshot) does not pin its buffer for the stream's life.
	readRetain = 1 << 20
)

// Causes of a refused connection. Their texts double as the log-once keys.
var (
	errBadMagic      = errors.New("not a raftkv peer stream (bad magic)")
	errVersion       = errors.New("unsupported protocol version")
	errWrongCluster  = errors.New("wrong cluster id")
	errWrongReceiver = errors.New("stream meant for another node id")
	errUnknownSender = errors.New("sender is not a known peer")
	errBadStatus     = errors.New("unknown handshake status")
	errBadKind       = errors.New("unsupported stream kind")
	errFrameTooLarge = errors.New("frame exceeds the size limit")
	errEmptyFrame    = errors.New("empty frame")
	errBadMessage    = errors.New("message not acceptable on this stream")
)

// streamKind says what a stream carries.
type streamKind byte

const (
	// kindMessages: frames of raft messages, for as long as the stream
	// lives.
	kindMessages streamKind = iota + 1
	// kindSnapshot: one snapshot (see snapshot.go), then an answer.
	kindSnapshot
	// kindQuery: one request, then an answer (see query.go).
	kindQuery
)

// handshake is what a dialer says before anything else.
type handshake struct {
	version   byte
	kind      streamKind
	clusterID uint64
	from, to  uint64
}

func (h handshake) appendTo(b []byte) []byte {
	b = append(b, magic...)
	b = append(b, h.version, byte(h.kind))
	b = binary.BigEndian.AppendUint64(b, h.clusterID)
	b = binary.BigEndian.AppendUint64(b, h.from)
	return binary.BigEndian.AppendUint64(b, h.to)
}

// parseHandshake decodes a handshake. It checks only the framing; whether
// the version and ids are acceptable is the acceptor's decision, so that it
// can answer with the precise reason.
func parseHandshake(b []byte) (handshake, error) {
	if len(b) != handshakeSize {
		return handshake{}, fmt.Errorf("handshake of %d bytes, want %d", len(b), handshakeSize)
	}
	if string(b[:len(magic)]) != magic {
		return handshake{}, errBadMagic
	}
	b = b[len(magic):]
	return handshake{
		version:   b[0],
		kind:      streamKind(b[1]),
		clusterID: binary.BigEndian.Uint64(b[2:]),
		from:      binary.BigEndian.Uint64(b[10:]),
		to:        binary.BigEndian.Uint64(b[18:]),
	}, nil
}

// status is the acceptor's answer to a handshake.
type status byte

const (
	statusOK status = iota
	statusBadVersion
	statusWrongCluster
	statusWrongReceiver
	statusUnknownSender
	statusBadKind
	statusEnd // sentinel; keep last
)

var statusErrs = [...]error{
	statusBadVersion:    errVersion,
	statusWrongCluster:  errWrongCluster,
	statusWrongReceiver: errWrongReceiver,
	statusUnknownSender: errUnknownSender,
	statusBadKind:       errBadKind,
}

// err is nil for statusOK and otherwise the reason the stream was refused.
func (s status) err() error {
	if s == statusOK {
		return nil
	}
	if s < statusEnd {
		return statusErrs[s]
	}
	return fmt.Errorf("%w %d", errBadStatus, s)
}

func appendAnswer(b []byte, s status) []byte {
	b = append(b, magic...)
	return append(b, protocolVersion, byte(s))
}

// parseAnswer decodes the acceptor's answer; an answer with a status this
// version does not know is an error.
func parseAnswer(b []byte) (status, error) {
	if len(b) != answerSize {
		return 0, fmt.Errorf("answer of %d bytes, want %d", len(b), answerSize)
	}
	if string(b[:len(magic)]) != magic {
		return 0, errBadMagic
	}
	if v := b[len(magic)]; v != protocolVersion {
		return 0, fmt.Errorf("%w %d in answer", errVersion, v)
	}
	s := status(b[len(magic)+1])
	if s >= statusEnd {
		return 0, fmt.Errorf("%w %d", errBadStatus, s)
	}
	return s, nil
}

// appendFrame appends m as one frame. A message whose body would exceed max
// is not appended: no peer with that limit would accept it.
func appendFrame(b []byte, m *raftpb.Message, max int) ([]byte, error) {
	start := len(b)
	b = m.MarshalAppend(append(b, 0, 0, 0, 0))
	n := len(b) - start - frameHeaderSize
	if n > max {
		return b[:start], fmt.Errorf("%w: %v is %d bytes, limit %d", errFrameTooLarge, m.Type, n, max)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(n))
	return b, nil
}

// frameReader reads frames from one stream, reusing its buffer.
type frameReader struct {
	r   io.Reader
	max int
	hdr [frameHeaderSize]byte
	buf []byte
}

// next returns the next frame's body, valid until the following call. It
// returns io.EOF only when the stream ends cleanly between frames.
func (fr *frameReader) next() ([]byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:])
	if n == 0 {
		return nil, errEmptyFrame
	}
	if uint64(n) > uint64(fr.max) {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", errFrameTooLarge, n, fr.max)
	}
	if cap(fr.buf) > readRetain {
		fr.buf = nil
	}
	size := int(n)
	b := fr.buf[:0]
	for len(b) < size {
		want := min(size, len(b)+readGrowStep)
		if want > cap(b) {
			// Doubling keeps the copies linear in the frame size.
			nb := make([]byte, len(b), min(size, max(want, 2*cap(b))))
			copy(nb, b)
			b = nb
		}
		k, err := io.ReadFull(fr.r, b[len(b):want])
		b = b[:len(b)+k]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read frame body (%d of %d bytes): %w", len(b), size, err)
		}
	}
	fr.buf = b
	return b, nil
}
