package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// A snapshot travels on a connection of its own, one snapshot per
// connection, so that however large it is, heartbeats and appends keep
// flowing on the message streams and no frame has to hold it. After a
// handshake of kind kindSnapshot, the sender writes
//
//	frame   the MsgSnap, with the snapshot's metadata and no data
//	size    uint64 BE: the length of the data
//	chunk   uint32 BE length n (1..snapChunkSize) | n bytes | uint32 BE CRC-32C of them
//	...     as many chunks as the data needs
//	end     uint32 BE 0 | uint32 BE CRC-32C of all the data
//
// and the receiver, once it has checked every chunk, the length and the
// whole checksum, made the data durable through Snapshots.Receive's sink and
// handed the MsgSnap to its node, answers with one snapResult byte. Only
// then does the sender report the snapshot sent; any failure on either side
// closes the connection, and the core starts over with a new MsgSnap.
// Memory stays bounded by a chunk on both ends.

const (
	snapChunkSize = 1 << 20
	// snapIdleTimeout is how long a receiver waits for the next chunk: a
	// sender may be held up by its own disk, but not forever.
	snapIdleTimeout = 30 * time.Second
	// snapAckTimeout bounds the sender's wait for the receiver's answer
	// after the last byte; the receiver fsyncs the whole snapshot
	// meanwhile.
	snapAckTimeout = 2 * time.Minute
	// snapProgressEvery is how often a long transfer logs its progress.
	snapProgressEvery = 10 * time.Second
)

// snapResult is the receiver's answer at the end of a snapshot stream.
type snapResult byte

const (
	snapOK snapResult = iota
	snapTooLarge
	snapCorrupt // the stream broke the format, a chunk or the whole failed its checksum
	snapFailed  // the receiver could not store it
)

func (r snapResult) String() string {
	switch r {
	case snapOK:
		return "ok"
	case snapTooLarge:
		return "snapshot larger than the receiver accepts"
	case snapCorrupt:
		return "snapshot stream corrupt"
	case snapFailed:
		return "receiver could not store the snapshot"
	}
	return fmt.Sprintf("unknown result %d", byte(r))
}

// Snapshots is where the transport finds the snapshots it sends and puts the
// ones it receives; the node implements it on its storage. Its methods are
// called from the transport's goroutines, concurrently.
type Snapshots interface {
	// Open opens the data of the snapshot at index and term for sending,
	// and returns its length. The reader must verify what it reads and
	// fail rather than return damaged data.
	Open(index, term uint64) (data io.ReadCloser, size int64, err error)
	// Receive starts storing the data, size bytes long, of the snapshot m
	// describes, arriving from a peer.
	Receive(m raftpb.SnapshotMetadata, size int64) (SnapshotSink, error)
}

// SnapshotSink stores one incoming snapshot's data.
type SnapshotSink interface {
	io.Writer
	// Commit is called once all the data arrived and verified. It makes
	// the data durable and keeps it for when the node's core asks for the
	// snapshot; until then, and if the node restarts first, it is not the
	// node's state.
	Commit() error
	// Abort discards what was written. It is called on every failure and
	// must be harmless after Commit.
	Abort()
}

// SnapshotStats are the transport's snapshot transfers since New.
type SnapshotStats struct {
	// Sending and Receiving are the transfers in progress now.
	Sending, Receiving int
	// Sent and Received count the transfers that completed: the receiver
	// verified and stored the snapshot. SendFailures and ReceiveFailures
	// count those that did not.
	Sent, SendFailures, Received, ReceiveFailures uint64
	// BytesSent and BytesReceived count snapshot data, failed transfers
	// included.
	BytesSent, BytesReceived uint64
	// SendSeconds and ReceiveSeconds are the total duration of the
	// transfers that ended, failed or not.
	SendSeconds, ReceiveSeconds float64
}

// snapCounters are the atomics behind SnapshotStats.
type snapCounters struct {
	sending, receiving                            atomic.Int64
	sent, sendFailures, received, receiveFailures atomic.Uint64
	bytesSent, bytesReceived                      atomic.Uint64
	sendNanos, receiveNanos                       atomic.Uint64
}

// SnapshotStats returns the snapshot transfer counters.
func (t *Transport) SnapshotStats() SnapshotStats {
	c := &t.snaps
	return SnapshotStats{
		Sending:         int(c.sending.Load()),
		Receiving:       int(c.receiving.Load()),
		Sent:            c.sent.Load(),
		SendFailures:    c.sendFailures.Load(),
		Received:        c.received.Load(),
		ReceiveFailures: c.receiveFailures.Load(),
		BytesSent:       c.bytesSent.Load(),
		BytesReceived:   c.bytesReceived.Load(),
		SendSeconds:     time.Duration(c.sendNanos.Load()).Seconds(),
		ReceiveSeconds:  time.Duration(c.receiveNanos.Load()).Seconds(),
	}
}

// sendSnapshot starts streaming m's snapshot to p on a goroutine of its
// own, unless a transfer to p is running already: the core has one snapshot
// in flight per peer, and a MsgSnap it repeats meanwhile (after giving up
// waiting) is answered by the report of the running transfer. The caller
// holds t.mu for reading, so that Close cannot be waiting for t.wg yet.
func (p *peer) sendSnapshot(m raftpb.Message) {
	t := p.t
	p.mu.Lock()
	busy, stopped := p.snapCancel != nil, p.stopped
	var ctx context.Context
	if !busy && !stopped {
		ctx, p.snapCancel = context.WithCancel(context.Background())
	}
	p.mu.Unlock()
	switch {
	case busy:
		t.log.Debug("snapshot transfer already running; not starting another", slog.Uint64("peer", p.id))
		return
	case stopped:
		t.dropped(p.id, &m)
		return
	}
	t.wg.Go(func() {
		t.snaps.sending.Add(1)
		start := time.Now()
		err := p.streamSnapshot(ctx, m)
		t.snaps.sending.Add(-1)
		t.snaps.sendNanos.Add(uint64(time.Since(start)))
		p.mu.Lock()
		p.snapCancel() // releases ctx
		p.snapCancel = nil
		p.mu.Unlock()
		// Reported only now, so that the MsgSnap the core sends in
		// answer to a failure finds no transfer running.
		if err != nil {
			t.snaps.sendFailures.Add(1)
			t.logs.warn(p.who, "snapshot "+causeOf(err), "sending a snapshot failed",
				slog.Uint64("peer", p.id), slog.Any("err", err))
		} else {
			t.snaps.sent.Add(1)
		}
		t.rep.reportSnapshot(p.id, err == nil)
	})
}

// cancelSnapshotLocked ends the running snapshot transfer, if any. The
// caller holds p.mu.
func (p *peer) cancelSnapshotLocked() {
	if p.snapCancel != nil {
		p.snapCancel()
	}
}

// streamSnapshot sends m's snapshot on a new connection and waits for the
// receiver's answer.
func (p *peer) streamSnapshot(ctx context.Context, m raftpb.Message) error {
	t := p.t
	md := m.Snapshot.Metadata
	data, size, err := t.cfg.Snapshots.Open(md.Index, md.Term)
	if err != nil {
		return &failure{"open", fmt.Errorf("open snapshot %d/%d: %w", md.Index, md.Term, err)}
	}
	defer data.Close()

	p.mu.Lock()
	addr := p.addr
	p.mu.Unlock()
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return &failure{"dial", err}
	}
	defer raw.Close()
	// Cancelling ctx (peer stopped, removed or re-pointed, transport
	// closed) cuts the connection, and with it any read or write.
	defer context.AfterFunc(ctx, func() { _ = raw.Close() })()
	conn, err := p.handshake(raw, addr, kindSnapshot)
	if err != nil {
		return err
	}
	err = p.writeSnapshot(conn, m, data, size)
	if ctx.Err() != nil {
		return &failure{"cancelled", ctx.Err()}
	}
	return err
}

// writeSnapshot writes the stream after the handshake and reads the answer.
func (p *peer) writeSnapshot(conn net.Conn, m raftpb.Message, data io.Reader, size int64) error {
	t := p.t
	md := m.Snapshot.Metadata
	m.Snapshot = &raftpb.Snapshot{Metadata: md} // never the data inline
	head, err := appendFrame(nil, &m, t.cfg.MaxFrameSize)
	if err != nil {
		return &failure{"header", err}
	}
	head = binary.BigEndian.AppendUint64(head, uint64(size))
	w := progressWriter{conn: conn, timeout: t.cfg.WriteTimeout}
	if _, err := w.Write(head); err != nil {
		return &failure{"write", err}
	}
	prog := newProgress(t.log, "sending snapshot", p.id, md, size)
	buf := make([]byte, 4+snapChunkSize+4)
	var sent int64
	var sum uint32
	for {
		n, rerr := io.ReadFull(data, buf[4:4+snapChunkSize])
		if n > 0 {
			putChunk(buf, n)
			sum = crc32.Update(sum, castagnoli, buf[4:4+n])
			if _, err := w.Write(buf[:4+n+4]); err != nil {
				return &failure{"write", err}
			}
			sent += int64(n)
			t.snaps.bytesSent.Add(uint64(n))
			prog.update(sent)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return &failure{"read", fmt.Errorf("read snapshot %d/%d: %w", md.Index, md.Term, rerr)}
		}
	}
	if sent != size {
		return &failure{"read", fmt.Errorf("snapshot %d/%d holds %d bytes, not the %d announced", md.Index, md.Term, sent, size)}
	}
	if _, err := w.Write(appendEnd(nil, sum)); err != nil {
		return &failure{"write", err}
	}
	if err := conn.SetReadDeadline(time.Now().Add(snapAckTimeout)); err != nil {
		return &failure{"answer", err}
	}
	var ans [1]byte
	if _, err := io.ReadFull(conn, ans[:]); err != nil {
		return &failure{"answer", fmt.Errorf("read the receiver's answer: %w", err)}
	}
	if r := snapResult(ans[0]); r != snapOK {
		return &failure{"refused", fmt.Errorf("the receiver answered: %v", r)}
	}
	prog.done()
	return nil
}

// snapError is a receiving failure and the answer it calls for.
type snapError struct {
	result snapResult
	err    error
}

func (e *snapError) Error() string { return e.err.Error() }
func (e *snapError) Unwrap() error { return e.err }

func snapErrorf(r snapResult, format string, args ...any) error {
	return &snapError{r, fmt.Errorf(format, args...)}
}

// receiveSnapshot reads one snapshot from p's snapshot stream, stores it,
// hands the MsgSnap to the node and answers.
func (t *Transport) receiveSnapshot(p *peer, conn net.Conn) error {
	t.snaps.receiving.Add(1)
	start := time.Now()
	err := t.readSnapshot(p, conn)
	t.snaps.receiving.Add(-1)
	t.snaps.receiveNanos.Add(uint64(time.Since(start)))
	res := snapOK
	if err != nil {
		t.snaps.receiveFailures.Add(1)
		res = snapFailed
		var se *snapError
		if errors.As(err, &se) {
			res = se.result
		}
	} else {
		t.snaps.received.Add(1)
	}
	// The answer is a courtesy when the stream broke: the sender may be
	// gone, and will fail on its own.
	if werr := conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); werr == nil {
		_, werr = conn.Write([]byte{byte(res)})
		if err == nil && werr != nil {
			// Stored and delivered all the same; the sender will try
			// again, and the core will take the news as old.
			err = fmt.Errorf("answer: %w", werr)
		}
	}
	if err != nil {
		return &failure{"snapshot " + res.String(), err}
	}
	return nil
}

func (t *Transport) readSnapshot(p *peer, conn net.Conn) error {
	br := bufio.NewReaderSize(conn, readBufferSize)
	idle := func() error { return conn.SetReadDeadline(time.Now().Add(snapIdleTimeout)) }
	if err := idle(); err != nil {
		return err
	}
	fr := frameReader{r: br, max: t.cfg.MaxFrameSize}
	body, err := fr.next()
	if err != nil {
		return snapErrorf(snapCorrupt, "read the snapshot header: %w", err)
	}
	m, err := raftpb.UnmarshalMessage(body)
	if err == nil {
		err = t.checkMessage(p.id, &m)
	}
	if err == nil && (m.Type != raftpb.MsgSnap || m.Snapshot == nil || len(m.Snapshot.Data) > 0) {
		err = fmt.Errorf("%w: %v opens a snapshot stream", errBadMessage, m)
	}
	if err != nil {
		return snapErrorf(snapCorrupt, "snapshot header: %w", err)
	}
	md := m.Snapshot.Metadata
	var sz [8]byte
	if _, err := io.ReadFull(br, sz[:]); err != nil {
		return snapErrorf(snapCorrupt, "read the snapshot size: %w", err)
	}
	size := binary.BigEndian.Uint64(sz[:])
	if size > uint64(t.cfg.MaxSnapshotBytes) {
		return snapErrorf(snapTooLarge, "snapshot %d/%d of %d bytes exceeds the %d byte limit", md.Index, md.Term, size, t.cfg.MaxSnapshotBytes)
	}
	sink, err := t.cfg.Snapshots.Receive(md, int64(size))
	if err != nil {
		return snapErrorf(snapFailed, "store snapshot %d/%d: %w", md.Index, md.Term, err)
	}
	defer sink.Abort()
	prog := newProgress(t.log, "receiving snapshot", p.id, md, int64(size))
	cr := chunkReader{r: br, size: size}
	for {
		if err := idle(); err != nil {
			return err
		}
		chunk, err := cr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if _, err := sink.Write(chunk); err != nil {
			return snapErrorf(snapFailed, "store snapshot %d/%d: %w", md.Index, md.Term, err)
		}
		t.snaps.bytesReceived.Add(uint64(len(chunk)))
		prog.update(int64(cr.got))
	}
	if err := sink.Commit(); err != nil {
		return snapErrorf(snapFailed, "store snapshot %d/%d: %w", md.Index, md.Term, err)
	}
	prog.done()
	t.h.Deliver(m)
	p.received.Add(1)
	return nil
}

// chunkReader decodes the chunks of a snapshot stream of size bytes,
// checking each chunk, then the length and the checksum of the whole.
type chunkReader struct {
	r    io.Reader
	size uint64
	got  uint64 // data bytes returned so far
	sum  uint32 // their CRC-32C
	buf  []byte
}

// next returns the next chunk, valid until the following call, or io.EOF
// once the end marker arrived and everything checked out. Other errors are
// *snapError.
func (c *chunkReader) next() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, snapErrorf(snapCorrupt, "read a chunk header after %d of %d bytes: %w", c.got, c.size, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return nil, snapErrorf(snapCorrupt, "read the snapshot checksum: %w", err)
		}
		if c.got != c.size {
			return nil, snapErrorf(snapCorrupt, "snapshot ends after %d of the %d bytes announced", c.got, c.size)
		}
		if want := binary.BigEndian.Uint32(hdr[:]); want != c.sum {
			return nil, snapErrorf(snapCorrupt, "snapshot fails its checksum (sent %08x, computed %08x)", want, c.sum)
		}
		return nil, io.EOF
	}
	if n > snapChunkSize || c.got+uint64(n) > c.size {
		return nil, snapErrorf(snapCorrupt, "chunk of %d bytes after %d of %d bytes (chunks hold at most %d)", n, c.got, c.size, snapChunkSize)
	}
	if c.buf == nil {
		// Allocated once the first chunk shows the stream is real, and
		// never larger than a chunk.
		c.buf = make([]byte, snapChunkSize)
	}
	chunk := c.buf[:n]
	if _, err := io.ReadFull(c.r, chunk); err != nil {
		return nil, snapErrorf(snapCorrupt, "read a chunk after %d of %d bytes: %w", c.got, c.size, err)
	}
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, snapErrorf(snapCorrupt, "read a chunk checksum after %d of %d bytes: %w", c.got, c.size, err)
	}
	if want, have := binary.BigEndian.Uint32(hdr[:]), crc32.Checksum(chunk, castagnoli); want != have {
		return nil, snapErrorf(snapCorrupt, "chunk at byte %d fails its checksum (sent %08x, computed %08x)", c.got, want, have)
	}
	c.sum = crc32.Update(c.sum, castagnoli, chunk)
	c.got += uint64(n)
	return chunk, nil
}

// putChunk frames the n data bytes at buf[4:4+n] as a chunk in place:
// buf[:4+n+4] is then ready to write.
func putChunk(buf []byte, n int) {
	binary.BigEndian.PutUint32(buf, uint32(n))
	binary.BigEndian.PutUint32(buf[4+n:], crc32.Checksum(buf[4:4+n], castagnoli))
}

// appendEnd appends the end marker of a stream whose data has checksum sum.
func appendEnd(b []byte, sum uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(b, 0), sum)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// progress logs a snapshot transfer: its start, every snapProgressEvery,
// and its end with the throughput.
type progress struct {
	log        *slog.Logger
	start, due time.Time
	size       int64
}

func newProgress(log *slog.Logger, what string, peer uint64, md raftpb.SnapshotMetadata, size int64) *progress {
	log = log.With(slog.String("transfer", what), slog.Uint64("peer", peer),
		slog.Uint64("index", md.Index), slog.Uint64("term", md.Term), slog.Int64("bytes", size))
	log.Info("snapshot transfer started")
	now := time.Now()
	return &progress{log: log, start: now, due: now.Add(snapProgressEvery), size: size}
}

func (p *progress) update(n int64) {
	now := time.Now()
	if now.Before(p.due) {
		return
	}
	p.due = now.Add(snapProgressEvery)
	p.log.Info("snapshot transfer progress", slog.Int64("done_bytes", n),
		slog.String("done", fmt.Sprintf("%.0f%%", 100*float64(n)/float64(max(p.size, 1)))), p.rate(n, now))
}

func (p *progress) done() {
	now := time.Now()
	p.log.Info("snapshot transfer done", slog.Duration("took", now.Sub(p.start).Round(time.Millisecond)), p.rate(p.size, now))
}

func (p *progress) rate(n int64, now time.Time) slog.Attr {
	secs := max(now.Sub(p.start).Seconds(), 1e-9)
	return slog.String("rate", fmt.Sprintf("%.1f MB/s", float64(n)/secs/1e6))
}
