package transport

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

const (
	backoffMin = 50 * time.Millisecond
	backoffMax = time.Second

	// maxBatchBytes ends a batch so that a steady flood of messages still
	// reaches the wire in bounded pieces rather than one ever-growing write.
	maxBatchBytes = 256 << 10
	// writeChunk is how much is written per refresh of the write deadline.
	writeChunk = 256 << 10
	// scratchRetain is the largest batch buffer kept between batches, so a
	// rare snapshot does not pin its size for the stream's life.
	scratchRetain = 4 << 20
)

// peer is one remote node: its address, its bounded outbound queue and the
// writer goroutine (run) that owns the outbound stream.
type peer struct {
	t      *Transport
	id     uint64
	who    string              // log-once key
	queue  chan raftpb.Message // bounded; Send never blocks on it
	redial chan struct{}       // size 1: cuts a backoff wait short after setAddr
	cancel context.CancelFunc  // stops run; set under t.mu by startPeerLocked, nil if never started

	mu   sync.Mutex // guards the fields below
	addr string
	gen  uint64   // bumped by setAddr, so that run can tell a deliberate cut from a failure
	conn net.Conn // the raw connection being set up or streamed; stop and setAddr close it
	// snapCancel ends the running snapshot transfer; nil when none runs.
	snapCancel context.CancelFunc
	stopped    bool // stop ran: start no more transfers

	scratch []byte // batch buffer; run's goroutine only

	connected               atomic.Bool
	sent, dropped, received atomic.Uint64
}

func newPeer(t *Transport, id uint64, addr string) *peer {
	return &peer{
		t:      t,
		id:     id,
		who:    "peer " + strconv.FormatUint(id, 10),
		queue:  make(chan raftpb.Message, t.cfg.QueueSize),
		redial: make(chan struct{}, 1),
		addr:   addr,
	}
}

// failure is an error with a short, stable cause: the log-once key, since
// the wrapped error's text varies with ports and timings.
type failure struct {
	cause string
	err   error
}

func (f *failure) Error() string { return f.cause + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func causeOf(err error) string {
	var f *failure
	if errors.As(err, &f) {
		return f.cause
	}
	return "error"
}

// run keeps a stream to the peer open and drains the queue into it until
// ctx is cancelled. While the peer cannot be reached it retries with
// exponential backoff and jitter, and discards what was queued meanwhile:
// Raft resends what matters, and stale heartbeats help nobody.
func (p *peer) run(ctx context.Context) {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // documented never to fail
	rng := rand.New(rand.NewChaCha8(seed))
	attempt := 0
	for {
		raw, conn, gen, err := p.connect(ctx)
		if err == nil {
			attempt = 0
			p.t.logs.reset(p.who)
			p.t.log.Info("connected to peer", slog.Uint64("peer", p.id), slog.String("addr", raw.RemoteAddr().String()))
			p.connected.Store(true)
			err = p.stream(ctx, raw, conn)
			p.connected.Store(false)
		}
		if ctx.Err() != nil {
			return
		}
		if p.generation() != gen {
			continue // re-pointed by setAddr: redial now, nothing failed
		}
		p.fail(err)
		if !p.wait(ctx, backoff(attempt, rng)) {
			return
		}
		attempt++
	}
}

// backoff is the wait before retry number attempt: exponential from
// backoffMin up to backoffMax, then a random point in its upper half, so
// that nodes restarted together do not redial in lockstep.
func backoff(attempt int, rng *rand.Rand) time.Duration {
	d := backoffMax
	if attempt < 16 {
		d = min(backoffMin<<attempt, backoffMax)
	}
	return d/2 + time.Duration(rng.Int64N(int64(d/2)+1))
}

func (p *peer) wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
	case <-p.redial:
	}
	return true
}

func (p *peer) fail(err error) {
	p.mu.Lock()
	addr := p.addr
	p.mu.Unlock()
	p.t.logs.warn(p.who, causeOf(err), "peer unreachable",
		slog.Uint64("peer", p.id), slog.String("addr", addr), slog.Any("err", err))
	p.discardQueued()
	p.t.rep.reportUnreachable(p.id)
}

// discardQueued drops what is queued now; it stops there, so that a
// sender faster than the loop cannot keep it spinning.
func (p *peer) discardQueued() {
	for range len(p.queue) {
		select {
		case <-p.queue:
			p.dropped.Add(1)
		default:
			return
		}
	}
}

// connect dials the peer and completes the handshake. conn is raw, or the
// TLS connection over it.
func (p *peer) connect(ctx context.Context) (raw, conn net.Conn, gen uint64, err error) {
	p.mu.Lock()
	addr, gen := p.addr, p.gen
	p.mu.Unlock()
	d := net.Dialer{Timeout: p.t.cfg.DialTimeout}
	raw, err = d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, gen, &failure{"dial", err}
	}
	if !p.track(ctx, raw) {
		_ = raw.Close()
		return nil, nil, gen, ctx.Err()
	}
	conn, err = p.handshake(raw, addr, kindMessages)
	if err != nil {
		p.release(raw)
		return nil, nil, gen, err
	}
	return raw, conn, gen, nil
}

// handshake runs the dialer's side of the handshake for a stream of kind.
func (p *peer) handshake(raw net.Conn, addr string, kind streamKind) (net.Conn, error) {
	return p.t.dialHandshake(raw, addr, p.id, kind)
}

// dialHandshake runs the dialer's side of the handshake for a stream of
// kind to node to at addr.
func (t *Transport) dialHandshake(raw net.Conn, addr string, to uint64, kind streamKind) (net.Conn, error) {
	cfg := &t.cfg
	if err := raw.SetDeadline(time.Now().Add(cfg.DialTimeout)); err != nil {
		return nil, &failure{"handshake", err}
	}
	conn := raw
	if cfg.TLS != nil {
		tc := tls.Client(raw, clientTLS(cfg.TLS, addr))
		if err := tc.Handshake(); err != nil {
			return nil, &failure{"tls handshake", err}
		}
		conn = tc
	}
	hs := handshake{version: protocolVersion, kind: kind, clusterID: cfg.ClusterID, from: cfg.ID, to: to}
	if _, err := conn.Write(hs.appendTo(make([]byte, 0, handshakeSize))); err != nil {
		return nil, &failure{"handshake", fmt.Errorf("send handshake: %w", err)}
	}
	var ans [answerSize]byte
	if _, err := io.ReadFull(conn, ans[:]); err != nil {
		return nil, &failure{"handshake", fmt.Errorf("read answer: %w", err)}
	}
	st, err := parseAnswer(ans[:])
	if err != nil {
		return nil, &failure{"handshake", err}
	}
	if err := st.err(); err != nil {
		return nil, &failure{"refused: " + err.Error(), err}
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, &failure{"handshake", err}
	}
	return conn, nil
}

// clientTLS names the server to verify when the configuration does not.
func clientTLS(c *tls.Config, addr string) *tls.Config {
	if c.ServerName != "" {
		return c
	}
	host, _, _ := net.SplitHostPort(addr)
	c = c.Clone()
	c.ServerName = host
	return c
}

// stream writes queued messages to conn until ctx is cancelled or the
// stream fails, then closes it.
func (p *peer) stream(ctx context.Context, raw, conn net.Conn) error {
	// The peer never writes after its answer, so a read returns only when
	// the stream dies. Watching for that lets an idle writer reconnect at
	// once when the peer restarts, instead of losing the next batch to a
	// write that the kernel accepts before the reset arrives. The watcher
	// is owned by this call, which waits for it.
	lost := make(chan struct{})
	var lostErr error
	go func() {
		defer close(lost)
		var b [1]byte
		if _, lostErr = conn.Read(b[:]); lostErr == nil {
			lostErr = errors.New("peer wrote on a send-only stream")
		}
	}()
	defer func() {
		p.release(raw)
		<-lost
	}()

	w := progressWriter{conn: conn, timeout: p.t.cfg.WriteTimeout}
	for {
		var m raftpb.Message
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-lost:
			return &failure{"stream lost", lostErr}
		case m = <-p.queue:
		}
		if err := p.writeBatch(w, m); err != nil {
			return &failure{"write", err}
		}
	}
}

// writeBatch writes m and whatever else is queued, up to maxBatchBytes, in
// one write.
func (p *peer) writeBatch(w io.Writer, m raftpb.Message) error {
	b, n := p.scratch[:0], 0
	for {
		if buf, err := appendFrame(b, &m, p.t.cfg.MaxFrameSize); err != nil {
			p.t.logs.warn(p.who, "message too large", "dropping a message too large to send",
				slog.Uint64("peer", p.id), slog.Any("err", err))
			p.dropped.Add(1)
			p.t.dropped(p.id, &m)
		} else {
			b = buf
			n++
		}
		if len(b) >= maxBatchBytes {
			break
		}
		select {
		case m = <-p.queue:
			continue
		default:
		}
		break
	}
	if n == 0 {
		return nil
	}
	_, err := w.Write(b)
	p.scratch = b[:0]
	if cap(b) > scratchRetain {
		p.scratch = nil
	}
	if err != nil {
		p.dropped.Add(uint64(n))
		return err
	}
	p.sent.Add(uint64(n))
	return nil
}

// progressWriter fails a write that makes no progress for timeout, rather
// than one that takes longer than timeout in all.
type progressWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (w progressWriter) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		if err := w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
			return n, err
		}
		k, err := w.conn.Write(b[n:min(len(b), n+writeChunk)])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// track records raw as the connection stop must close, unless stop has
// already run.
func (p *peer) track(ctx context.Context, raw net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	p.conn = raw
	return true
}

// release forgets and closes raw. Closing the raw connection rather than a
// TLS one skips the close-notify alert, which could wait on a dead peer.
func (p *peer) release(raw net.Conn) {
	p.mu.Lock()
	if p.conn == raw {
		p.conn = nil
	}
	p.mu.Unlock()
	_ = raw.Close()
}

func (p *peer) generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// setAddr re-points the peer and cuts its current stream, if any.
func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	if addr == p.addr {
		p.mu.Unlock()
		return
	}
	p.addr = addr
	p.gen++
	c := p.conn
	p.cancelSnapshotLocked() // the core will send it again, to the new address
	p.mu.Unlock()
	p.t.log.Info("peer address changed", slog.Uint64("peer", p.id), slog.String("addr", addr))
	if c != nil {
		_ = c.Close()
	}
	select {
	case p.redial <- struct{}{}:
	default:
	}
}

// stop makes run and a snapshot transfer return and closes their
// connections; the caller waits for them through the transport's WaitGroup.
func (p *peer) stop() {
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Lock()
	c := p.conn
	p.stopped = true
	p.cancelSnapshotLocked()
	p.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

func (p *peer) stats() PeerStats {
	p.mu.Lock()
	addr := p.addr
	p.mu.Unlock()
	return PeerStats{
		Addr:      addr,
		Connected: p.connected.Load(),
		Sent:      p.sent.Load(),
		Dropped:   p.dropped.Load(),
		Received:  p.received.Load(),
	}
}
