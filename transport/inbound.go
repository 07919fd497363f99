package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// readBufferSize lets one read syscall pick up many small frames.
const readBufferSize = 64 << 10

// acceptLoop accepts connections until the listener is closed, serving
// each on its own goroutine.
func (t *Transport) acceptLoop(ln net.Listener) {
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			// Out of descriptors or similar: wait, so the loop does not
			// spin, and let existing streams carry on.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logs.warn("accept", "accept", "accepting peer connections failed", slog.Any("err", err))
			timer := time.NewTimer(delay)
			select {
			case <-t.done:
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		delay = 0
		t.mu.Lock()
		admit := !t.closed && t.pending < maxPendingHandshakes
		if admit {
			t.pending++
			t.conns[raw] = struct{}{}
			t.wg.Go(func() { t.serve(raw) })
		}
		t.mu.Unlock()
		if !admit {
			t.logs.warn("accept", "too many handshakes", "refusing a connection: too many handshakes in progress",
				slog.String("remote", raw.RemoteAddr().String()))
			_ = raw.Close()
		}
	}
}

// serve runs one accepted connection: handshake, then frames until the
// stream ends or breaks a rule. Every failure closes only this connection.
func (t *Transport) serve(raw net.Conn) {
	defer func() {
		t.mu.Lock()
		delete(t.conns, raw)
		// accept may have made raw a peer's stream even if it then failed.
		for _, streams := range []map[uint64]net.Conn{t.inbound, t.snapIn} {
			for id, c := range streams {
				if c == raw {
					delete(streams, id)
				}
			}
		}
		t.mu.Unlock()
		_ = raw.Close()
	}()
	p, conn, hs, err := t.accept(raw)
	t.mu.Lock()
	t.pending--
	t.mu.Unlock()
	if err != nil {
		host, _, _ := net.SplitHostPort(raw.RemoteAddr().String())
		t.logs.warn(host, causeOf(err), "refused a peer connection",
			slog.String("remote", raw.RemoteAddr().String()), slog.Any("err", err))
		return
	}
	switch hs.kind {
	case kindQuery:
		if err := t.answerQuery(hs.from, raw, conn); err != nil {
			host, _, _ := net.SplitHostPort(raw.RemoteAddr().String())
			t.logs.warn(host, causeOf(err), "failed to answer a query", slog.Uint64("from", hs.from), slog.Any("err", err))
		}
		return
	case kindSnapshot:
		err = t.receiveSnapshot(p, conn)
	default:
		err = t.read(p, conn)
	}
	if err == nil {
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		t.log.Debug("peer stream ended", slog.Uint64("peer", p.id), slog.Any("err", err))
		return
	}
	t.logs.warn(p.who, causeOf(err), "closed a peer stream", slog.Uint64("peer", p.id), slog.Any("err", err))
}

// accept runs the server side of the handshake and, if the peer is
// admitted, makes raw its current inbound stream of the handshake's kind. A
// stream the peer opens replaces its previous one of the same kind: that
// one is dead or about to be, since a peer runs one of each at a time.
func (t *Transport) accept(raw net.Conn) (*peer, net.Conn, handshake, error) {
	fail := func(f *failure) (*peer, net.Conn, handshake, error) { return nil, nil, handshake{}, f }
	if err := raw.SetDeadline(time.Now().Add(t.cfg.DialTimeout)); err != nil {
		return fail(&failure{"handshake", err})
	}
	conn := raw
	if t.cfg.TLS != nil {
		tc := tls.Server(raw, t.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			return fail(&failure{"tls handshake", err})
		}
		conn = tc
	}
	var b [handshakeSize]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return fail(&failure{"handshake", fmt.Errorf("read handshake: %w", err)})
	}
	hs, err := parseHandshake(b[:])
	if err != nil {
		return fail(&failure{"garbage", err})
	}
	st := t.check(hs)
	var p *peer
	if st == statusOK && hs.kind != kindQuery {
		// Become the peer's current stream before the peer hears "ok":
		// a peer that reconnects only after that answer then always finds
		// this stream registered, and replaces it rather than being
		// replaced by it.
		streams := t.inbound
		if hs.kind == kindSnapshot {
			streams = t.snapIn
		}
		t.mu.Lock()
		p = t.peers[hs.from]
		old := streams[hs.from]
		if p != nil {
			streams[hs.from] = raw
		}
		t.mu.Unlock()
		if p == nil { // removed since check
			st = statusUnknownSender
		} else if old != nil {
			_ = old.Close()
		}
	}
	if _, err := conn.Write(appendAnswer(make([]byte, 0, answerSize), st)); err != nil {
		return fail(&failure{"handshake", fmt.Errorf("answer handshake: %w", err)})
	}
	if err := st.err(); err != nil {
		return fail(&failure{err.Error(), fmt.Errorf("handshake from node %d of cluster %d to node %d: %w", hs.from, hs.clusterID, hs.to, err)})
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return fail(&failure{"handshake", err})
	}
	if hs.kind == kindMessages {
		t.logs.reset(p.who)
		t.log.Info("accepted peer stream", slog.Uint64("peer", p.id), slog.String("remote", raw.RemoteAddr().String()))
	}
	return p, conn, hs, nil
}

// check decides the answer to a handshake.
func (t *Transport) check(hs handshake) status {
	switch {
	case hs.version != protocolVersion:
		return statusBadVersion
	case hs.kind == kindQuery:
		// The asker may know neither the cluster's id nor be a peer yet:
		// see query.go.
		switch {
		case t.cfg.Query == nil:
			return statusBadKind
		case hs.to != t.cfg.ID:
			return statusWrongReceiver
		}
		return statusOK
	case hs.kind != kindMessages && (hs.kind != kindSnapshot || t.cfg.Snapshots == nil):
		return statusBadKind
	case hs.clusterID != t.cfg.ClusterID:
		return statusWrongCluster
	case hs.to != t.cfg.ID:
		return statusWrongReceiver
	}
	t.mu.RLock()
	_, known := t.peers[hs.from]
	t.mu.RUnlock()
	if !known {
		return statusUnknownSender
	}
	return statusOK
}

// read delivers p's messages from conn until the stream ends or a frame or
// message breaks the rules.
func (t *Transport) read(p *peer, conn net.Conn) error {
	fr := frameReader{r: bufio.NewReaderSize(conn, readBufferSize), max: t.cfg.MaxFrameSize}
	for {
		body, err := fr.next()
		if err != nil {
			if errors.Is(err, errFrameTooLarge) {
				return &failure{"oversize frame", err}
			}
			return &failure{"read", err}
		}
		m, err := raftpb.UnmarshalMessage(body)
		if err != nil {
			return &failure{"corrupt message", err}
		}
		if err := t.checkMessage(p.id, &m); err != nil {
			return &failure{"bad message", err}
		}
		if m.Type == raftpb.MsgSnap {
			// Its data would have to be staged first, which only a
			// snapshot stream does.
			return &failure{"bad message", fmt.Errorf("%w: %v on a message stream; snapshots travel on streams of their own", errBadMessage, m)}
		}
		t.h.Deliver(m)
		p.received.Add(1)
	}
}

// checkMessage holds each message to the stream it came on. The decoder
// already refuses local-only types; checking again here keeps the rule in
// one readable place rather than relying on a decoder detail.
func (t *Transport) checkMessage(from uint64, m *raftpb.Message) error {
	switch {
	case m.To != t.cfg.ID:
		return fmt.Errorf("%w: %v is addressed to node %d", errBadMessage, m, m.To)
	case m.From != from:
		return fmt.Errorf("%w: %v claims a sender other than the stream's node %d", errBadMessage, m, from)
	case !m.Type.Valid() || m.Type.IsLocal():
		return fmt.Errorf("%w: %v is not a peer message", errBadMessage, m)

	}
	return nil
}
