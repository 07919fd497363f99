package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// Defaults for zero Config fields.
const (
	// DefaultMaxFrameSize leaves room for an append of the largest
	// entries a node accepts. Snapshots do not travel in frames.
	DefaultMaxFrameSize = 64 << 20
	// DefaultMaxSnapshotBytes is generous: a snapshot is the whole state
	// of a node, and refusing one leaves a follower behind for good.
	DefaultMaxSnapshotBytes = 1 << 40
	DefaultQueueSize        = 1024
	DefaultDialTimeout      = 2 * time.Second
	DefaultWriteTimeout     = 5 * time.Second

	minFrameSize = 1 << 10
	maxFrameSize = 1 << 30
)

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("transport: closed")

// Config configures a Transport. Zero durations and sizes take the
// defaults above.
type Config struct {
	// ID is this node's id and ClusterID the cluster's; both must be non-zero
	// and both ends of every stream must agree on the cluster.
	ID, ClusterID uint64
	// ListenAddr is the "host:port" peers dial; ":0" picks a free port.
	ListenAddr string
	// Peers maps each peer's id to its "host:port". An entry for ID itself
	// is ignored, so the whole cluster's map may be passed. New copies it;
	// later changes go through AddPeer, UpdatePeer and RemovePeer.
	Peers map[uint64]string
	// MaxFrameSize bounds one message's encoding, in both directions.
	MaxFrameSize int
	// QueueSize bounds the messages waiting for one peer's writer; Send
	// drops what does not fit.
	QueueSize int
	// DialTimeout bounds connecting and the handshake, in both directions.
	DialTimeout time.Duration
	// WriteTimeout is how long a write may make no progress before the
	// stream is considered dead. It bounds progress, not a whole write, so
	// a large batch or snapshot on a slow link still gets through.
	WriteTimeout time.Duration
	// Snapshots is the node's store of snapshot files. A MsgSnap is sent by
	// streaming its snapshot's file (Snapshots.Open) on a connection of
	// its own, and a snapshot received is written through
	// Snapshots.Receive before its MsgSnap is delivered. Without it, MsgSnap
	// messages are dropped (and reported failed) and snapshot streams are
	// refused.
	Snapshots Snapshots
	// Query, when set, answers other nodes' queries (see Transport.Query).
	// Without it, query streams are refused.
	Query QueryFunc
	// MaxSnapshotBytes bounds the data of a snapshot this node accepts
	// from a peer (default DefaultMaxSnapshotBytes).
	MaxSnapshotBytes int64
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// TLS, when set, is used to both accept and dial: it needs certificates
	// for the server side and roots for the client side (and ClientAuth for
	// mutual TLS). An empty ServerName is filled with each peer's host.
	TLS *tls.Config
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case c.ID == raftpb.None:
		return errors.New("transport: ID must be non-zero")
	case c.ClusterID == 0:
		return errors.New("transport: ClusterID must be non-zero")
	case c.ListenAddr == "":
		return errors.New("transport: ListenAddr is required")
	case c.MaxFrameSize != 0 && (c.MaxFrameSize < minFrameSize || c.MaxFrameSize > maxFrameSize):
		return fmt.Errorf("transport: MaxFrameSize %d is outside [%d, %d]", c.MaxFrameSize, minFrameSize, maxFrameSize)
	case c.QueueSize < 0:
		return fmt.Errorf("transport: QueueSize %d is negative", c.QueueSize)
	case c.DialTimeout < 0:
		return fmt.Errorf("transport: DialTimeout %v is negative", c.DialTimeout)
	case c.WriteTimeout < 0:
		return fmt.Errorf("transport: WriteTimeout %v is negative", c.WriteTimeout)
	case c.MaxSnapshotBytes < 0:
		return fmt.Errorf("transport: MaxSnapshotBytes %d is negative", c.MaxSnapshotBytes)
	case c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil:
		return errors.New("transport: TLS has no certificate to accept peer connections with")
	}
	if err := checkAddr(c.ListenAddr); err != nil {
		return fmt.Errorf("transport: ListenAddr: %w", err)
	}
	for id, addr := range c.Peers {
		if err := checkPeer(id, addr); err != nil {
			return fmt.Errorf("transport: Peers: %w", err)
		}
	}
	return nil
}

func checkPeer(id uint64, addr string) error {
	if id == raftpb.None {
		return fmt.Errorf("peer id 0 (address %q) is not a valid id", addr)
	}
	if err := checkAddr(addr); err != nil {
		return fmt.Errorf("peer %d: %w", id, err)
	}
	return nil
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("address %q: bad port", addr)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxSnapshotBytes == 0 {
		c.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Handler is the node's side of the transport. Deliver is called from one
// goroutine per inbound stream, so messages from one peer arrive in order
// but different peers' messages concurrently. ReportUnreachable and
// ReportSnapshot are called from a single transport goroutine, never from
// inside Send. No method is called after Close returns, and Close waits for
// calls in progress, so a method must not wait for the caller of Close.
type Handler interface {
	// Deliver hands over a message from a peer; it must not block long, or
	// it stalls that peer's stream (and only that peer's).
	Deliver(m raftpb.Message)
	// ReportUnreachable says that messages to id were dropped or that id
	// could not be reached. Reports for one peer may be coalesced.
	ReportUnreachable(id uint64)
	// ReportSnapshot says whether a MsgSnap to id arrived (ok): the peer
	// verified and stored its snapshot and handed the MsgSnap to its node.
	// Installed it is once the peer's core answers. Not ok means it was
	// dropped or the transfer failed.
	ReportSnapshot(id uint64, ok bool)
}

// PeerStats are one peer's counters since the peer was added.
type PeerStats struct {
	Addr      string
	Connected bool   // the outbound stream is up
	Sent      uint64 // messages written to the outbound stream
	Dropped   uint64 // messages dropped: queue full, peer unreachable, too large, write failed
	Received  uint64 // messages from the peer handed to Deliver
}

// Transport sends and receives raft messages. All its methods are safe for
// concurrent use.
type Transport struct {
	cfg   Config
	h     Handler
	log   *slog.Logger
	logs  logOnce
	rep   *reporter
	snaps snapCounters
	done  chan struct{} // closed by Close: stops the accept loop and reporter
	wg    sync.WaitGroup

	mu      sync.RWMutex // guards the fields below; never held during I/O
	started bool
	closed  bool
	ln      net.Listener
	peers   map[uint64]*peer
	conns   map[net.Conn]struct{} // accepted connections not yet closed, so Close can cut them
	inbound map[uint64]net.Conn   // the current admitted message stream from each peer
	snapIn  map[uint64]net.Conn   // the current snapshot stream from each peer
	pending int                   // accepted connections still in the handshake
}

// maxPendingHandshakes bounds the connections waiting to complete a
// handshake, so that a flood of idle connections cannot pin unbounded
// goroutines and descriptors.
const maxPendingHandshakes = 64

// New validates cfg and returns a Transport that queues messages for its
// peers but does not listen or dial until Start.
func New(cfg Config, h Handler) (*Transport, error) {
	if h == nil {
		return nil, errors.New("transport: nil Handler")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	log := cfg.Logger.With(slog.Uint64("node", cfg.ID))
	t := &Transport{
		cfg:     cfg,
		h:       h,
		log:     log,
		logs:    logOnce{log: log, seen: make(map[logKey]struct{})},
		rep:     newReporter(h),
		done:    make(chan struct{}),
		peers:   make(map[uint64]*peer),
		conns:   make(map[net.Conn]struct{}),
		inbound: make(map[uint64]net.Conn),
		snapIn:  make(map[uint64]net.Conn),
	}
	for id, addr := range cfg.Peers {
		if id != cfg.ID {
			t.peers[id] = newPeer(t, id, addr)
		}
	}
	// The map is the caller's; AddPeer and RemovePeer change t.peers only.
	t.cfg.Peers = nil
	return t, nil
}

// Start listens on ListenAddr and starts dialing peers. It fails if the
// address is in use, if already started, or after Close.
func (t *Transport) Start() error {
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return ErrClosed
	case t.started:
		t.mu.Unlock()
		return errors.New("transport: already started")
	}
	t.started = true
	t.mu.Unlock()

	ln, err := net.Listen("tcp", t.cfg.ListenAddr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			err = fmt.Errorf("transport: peer address %s is already in use: %w", t.cfg.ListenAddr, err)
		} else {
			err = fmt.Errorf("transport: listen on %s: %w", t.cfg.ListenAddr, err)
		}
		t.mu.Lock()
		t.started = false
		t.mu.Unlock()
		return err
	}

	t.mu.Lock()
	if t.closed {
		// Close ran while we were listening; it found no listener to close.
		t.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	t.ln = ln
	t.wg.Go(func() { t.rep.run(t.done) })
	t.wg.Go(func() { t.acceptLoop(ln) })
	for _, p := range t.peers {
		t.startPeerLocked(p)
	}
	t.mu.Unlock()
	t.log.Info("transport listening", slog.String("addr", ln.Addr().String()))
	return nil
}

// Addr returns the address the transport listens on, or nil before Start.
func (t *Transport) Addr() net.Addr {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Send queues msgs for their peers and returns at once. A message for an
// unknown peer, or one that finds its peer's queue full, is dropped and the
// peer reported unreachable. A MsgSnap starts a snapshot transfer instead
// (its Data is ignored: the file comes from Config.Snapshots), unless one to
// that peer is running; it is reported when it ends. The transport owns the
// messages from now on: the caller must not modify them or the slices they
// point to.
func (t *Transport) Send(msgs []raftpb.Message) {
	var refused []*raftpb.Message // rare; logged once the lock is released
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return
	}
	for i := range msgs {
		m := &msgs[i]
		p := t.peers[m.To]
		switch {
		case m.To == t.cfg.ID || m.To == raftpb.None || !m.Type.Valid() || m.Type.IsLocal() ||
			(m.Type == raftpb.MsgSnap && m.Snapshot == nil):
			refused = append(refused, m)
		case p == nil || (m.Type == raftpb.MsgSnap && t.cfg.Snapshots == nil):
			refused = append(refused, m)
			t.dropped(m.To, m)
		case m.Type == raftpb.MsgSnap:
			p.sendSnapshot(*m)
		default:
			select {
			case p.queue <- *m:
			default:
				p.dropped.Add(1)
				t.dropped(m.To, m)
			}
		}
	}
	t.mu.RUnlock()
	for _, m := range refused {
		t.logs.warn("send", "unsendable message", "dropping a message that cannot go to a peer", slog.String("msg", m.String()))
	}
}

// dropped reports a message that will never reach its peer.
func (t *Transport) dropped(to uint64, m *raftpb.Message) {
	t.rep.reportUnreachable(to)
	if m.Type == raftpb.MsgSnap {
		t.rep.reportSnapshot(to, false)
	}
}

// AddPeer adds a peer and starts dialing it; for a known id it behaves as
// UpdatePeer. It ignores this node's own id and invalid addresses (logged).
func (t *Transport) AddPeer(id uint64, addr string) {
	if id == t.cfg.ID {
		return
	}
	if err := checkPeer(id, addr); err != nil {
		t.log.Error("transport: cannot add peer", slog.Any("err", err))
		return
	}
	t.mu.Lock()
	if p := t.peers[id]; p != nil || t.closed {
		t.mu.Unlock()
		if p != nil {
			p.setAddr(addr)
		}
		return
	}
	p := newPeer(t, id, addr)
	t.peers[id] = p
	if t.started {
		t.startPeerLocked(p)
	}
	t.mu.Unlock()
	t.log.Info("peer added", slog.Uint64("peer", id), slog.String("addr", addr))
}

// UpdatePeer points an existing peer at a new address, reconnecting at once.
// Queued messages and counters are kept. Unknown ids are ignored.
func (t *Transport) UpdatePeer(id uint64, addr string) {
	if err := checkPeer(id, addr); err != nil {
		t.log.Error("transport: cannot update peer", slog.Any("err", err))
		return
	}
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p != nil {
		p.setAddr(addr)
	}
}

// RemovePeer forgets a peer: its writer and any snapshot transfer stop, its
// inbound streams are closed, queued messages are discarded, and further
// handshakes from it are refused. It does not wait for the writer to finish; Close does.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	in, sn := t.inbound[id], t.snapIn[id]
	delete(t.inbound, id)
	delete(t.snapIn, id)
	t.mu.Unlock()
	if p != nil {
		p.stop()
		t.log.Info("peer removed", slog.Uint64("peer", id))
	}
	for _, c := range []net.Conn{in, sn} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// Close stops listening, closes every stream, and waits for every goroutine
// the transport started. Messages still queued are discarded. Calling it
// again waits likewise and returns nil.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return nil
	}
	t.closed = true
	close(t.done)
	ln := t.ln
	peers := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()

	var err error
	if ln != nil {
		if cerr := ln.Close(); cerr != nil {
			err = fmt.Errorf("transport: close listener: %w", cerr)
		}
	}
	for _, p := range peers {
		p.stop()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	t.wg.Wait()
	return err
}

// Stats returns each current peer's counters.
func (t *Transport) Stats() map[uint64]PeerStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := make(map[uint64]PeerStats, len(t.peers))
	for id, p := range t.peers {
		s[id] = p.stats()
	}
	return s
}

// startPeerLocked starts p's writer; t.mu must be held, so that Close
// cannot be waiting already.
func (t *Transport) startPeerLocked(p *peer) {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	t.wg.Go(func() { p.run(ctx) })
}
