package server

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"sync"

	"github.com/raftkv/raftkv/kv"
)

// DefaultSessions is how many writes one server has in flight at most, each
// under its own kv session (see sessionPool). An eighth of kv.MaxSessions
// leaves room for several nodes plus the sessions of HTTP clients that
// bring their own request ids, so that busy servers do not evict each
// other's sessions from the replicated table.
const DefaultSessions = kv.MaxSessions / 8

// session is one kv client session the server writes under: its ClientID
// and the Seq of its last request.
type session struct {
	id  uint64
	seq uint64
}

// next returns the request id of the session's next request.
func (s *session) next() kv.RequestID {
	s.seq++
	return kv.RequestID{ClientID: s.id, Seq: s.seq}
}

// sessionPool hands out kv sessions to writes. kv allows one outstanding
// request per session, so every concurrent write takes its own session and
// gives it back once the write has a definite result; the pool's bound is
// then the most writes in flight, and writers beyond it wait.
//
// Sessions are reused last-in first-out: the busy ones stay hot in the
// replicated table, and the idle ones at the bottom of the pool are those kv
// evicts first when its table fills (after which they are replaced).
type sessionPool struct {
	slots chan struct{} // a token per session in use; its capacity is the bound

	mu   sync.Mutex // guards idle
	idle []*session
}

func newSessionPool(max int) *sessionPool {
	return &sessionPool{slots: make(chan struct{}, max)}
}

// get returns a session for one write, waiting while all are in use.
func (p *sessionPool) get(ctx context.Context) (*session, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		s := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	p.mu.Unlock()
	return newSession(), nil
}

// put gives a session back. A session whose last request has no definite
// outcome, or that kv has forgotten, is not reused: keep is false.
func (p *sessionPool) put(s *session, keep bool) {
	if keep {
		p.mu.Lock()
		p.idle = append(p.idle, s)
		p.mu.Unlock()
	}
	<-p.slots
}

// inUse returns how many sessions are taken.
func (p *sessionPool) inUse() int { return len(p.slots) }

// newSession returns a session with a fresh random ClientID: unique across
// nodes and restarts without coordination (a collision among 2^64 values is
// negligible), and never 0, which means "no session" to kv.
func newSession() *session {
	var b [8]byte
	for {
		crand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return &session{id: id}
		}
	}
}
