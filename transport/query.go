package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// Queries are one-shot exchanges between nodes outside raft: one request,
// one answer, on a connection of their own. The node uses them for what
// must work before a node is a peer, or before it even knows the cluster's
// id: founders agreeing on a cluster id, a node asking another for its
// client URL. So the acceptor checks neither the handshake's cluster id
// nor that the sender is a known peer, only that the query is meant for it;
// the request and answer are the node's business, and carry their own
// checks.
//
// After the handshake (kind kindQuery) the dialer sends one frame, the
// request, and the acceptor one frame, the answer, whose first byte says
// whether the node answered (0) or refused (1, followed by its reason as
// text).

// MaxQuerySize bounds a query's request and answer.
const MaxQuerySize = 64 << 10

// ErrQueryRefused: the queried node refused the request; the error wraps it
// with the node's reason.
var ErrQueryRefused = errors.New("transport: query refused")

const (
	queryAnswered byte = 0
	queryRefused  byte = 1
)

// QueryFunc answers a query from node from. It must not block for long:
// it holds one of the transport's handshake slots. A returned error is
// sent back as the refusal's reason.
type QueryFunc func(from uint64, req []byte) ([]byte, error)

// Query sends req to node to at addr and returns its answer. It fails with
// an error wrapping ErrQueryRefused if the node refused the request, and
// with others if it could not be reached or did not answer within the dial
// timeout (or ctx's deadline, if earlier).
func (t *Transport) Query(ctx context.Context, to uint64, addr string, req []byte) ([]byte, error) {
	if len(req) == 0 || len(req) > MaxQuerySize {
		return nil, fmt.Errorf("transport: query of %d bytes: want 1 to %d", len(req), MaxQuerySize)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: query %s: %w", addr, err)
	}
	defer raw.Close()
	// Close unblocks the reads and writes below if ctx ends first.
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	conn, err := t.dialHandshake(raw, addr, to, kindQuery)
	if err != nil {
		return nil, fmt.Errorf("transport: query %s: %w", addr, err)
	}
	deadline, _ := ctx.Deadline()
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(req))), req...)); err != nil {
		return nil, fmt.Errorf("transport: query %s: send: %w", addr, err)
	}
	fr := frameReader{r: conn, max: MaxQuerySize + 1}
	ans, err := fr.next()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("transport: query %s: read the answer: %w", addr, err)
	}
	if ans[0] == queryRefused {
		return nil, fmt.Errorf("%w by %s: %s", ErrQueryRefused, addr, ans[1:])
	}
	if ans[0] != queryAnswered {
		return nil, fmt.Errorf("transport: query %s: answer of unknown kind %d", addr, ans[0])
	}
	return append([]byte(nil), ans[1:]...), nil
}

// answerQuery serves one query stream accepted from node from.
func (t *Transport) answerQuery(from uint64, raw, conn net.Conn) error {
	if err := raw.SetDeadline(time.Now().Add(t.cfg.DialTimeout)); err != nil {
		return err
	}
	fr := frameReader{r: conn, max: MaxQuerySize}
	req, err := fr.next()
	if err != nil {
		if errors.Is(err, errFrameTooLarge) {
			return &failure{"oversize query", err}
		}
		return &failure{"query", fmt.Errorf("read the request: %w", err)}
	}
	kind := queryAnswered
	ans, err := t.cfg.Query(from, req)
	if err != nil {
		kind, ans = queryRefused, []byte(err.Error())
	}
	if len(ans) > MaxQuerySize {
		kind, ans = queryRefused, []byte("answer too large")
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, frameHeaderSize+1+len(ans)), uint32(1+len(ans)))
	out = append(append(out, kind), ans...)
	if _, err := conn.Write(out); err != nil {
		return &failure{"query", fmt.Errorf("write the answer: %w", err)}
	}
	return nil
}
