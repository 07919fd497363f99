package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
)

// UnavailableError reports that a request did not complete within the
// server's bounded wait (Config.Timeout): no leader was known, or no quorum
// committed the proposal or confirmed the read index, or the node stopped.
// RESP answers it with -TRYAGAIN, HTTP with 503 and Retry-After.
type UnavailableError struct {
	// Write is true for writes. A read changes nothing either way.
	Write bool
	// Unknown is true when a write was handed to raft and may still be
	// applied; false when it was definitely not applied.
	Unknown bool
	// Wait is the bound the request waited for.
	Wait time.Duration
	// Cause is the last error from the node.
	Cause error
}

func (e *UnavailableError) Error() string {
	why := "no leader"
	if errors.Is(e.Cause, node.ErrStopped) {
		why = "node stopped"
	} else if e.Unknown {
		why = "no commit"
	}
	switch {
	case !e.Write:
		return fmt.Sprintf("%s within %v: could not confirm a linearizable read, nothing was changed", why, e.Wait)
	case e.Unknown:
		return fmt.Sprintf("%s within %v: the write may or may not have been applied", why, e.Wait)
	default:
		return fmt.Sprintf("%s within %v: the write was not applied", why, e.Wait)
	}
}

func (e *UnavailableError) Unwrap() error { return e.Cause }

// Retry backoff while no leader is known: elections take about an election
// timeout, so polling faster than this only burns CPU. A change of the
// node's status (a leader elected) ends the wait early.
const (
	retryMin = 5 * time.Millisecond
	retryMax = 100 * time.Millisecond
)

// write replicates c and returns its result. Failures the client caused
// (limits, syntax) come back as the result's Err, like kv's own; the error
// is for requests that could not complete (*UnavailableError) or internal
// failures.
//
// A c without a request id is sent under a session from the pool; a c with
// one (an HTTP client's own) is sent as it is. Either way every internal
// retry re-sends the same bytes, so kv applies the request at most once.
func (s *Server) write(ctx context.Context, c *kv.Command) (kv.Result, error) {
	if err := c.Validate(); err != nil {
		return kv.Result{Err: err}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if c.ID.ClientID != 0 {
		res, proposed, err := s.replicate(ctx, c.Marshal())
		if err == nil && proposed > 1 && sessionChanged(res.Err) {
			// The client sees one attempt; it must not take this for a
			// refusal and start over under a new session.
			return kv.Result{}, s.unknownOutcome(res.Err)
		}
		return res, err
	}
	for {
		sess, err := s.sessions.get(ctx)
		if err != nil {
			return kv.Result{}, &UnavailableError{Write: true, Wait: s.cfg.Timeout, Cause: fmt.Errorf("wait for a free session: %w", err)}
		}
		c.ID = sess.next()
		res, proposed, err := s.replicate(ctx, c.Marshal())
		c.ID = kv.RequestID{}
		switch {
		case err != nil:
			s.sessions.put(sess, false)
			return res, err
		case res.Err == kv.ErrSessionExpired && proposed == 1:
			// kv forgot this idle session and refused the request's only
			// copy: it was not applied. Start over under a new session.
			s.sessions.put(sess, false)
			continue
		case sessionChanged(res.Err):
			s.sessions.put(sess, false)
			return kv.Result{}, s.unknownOutcome(res.Err)
		default:
			s.sessions.put(sess, true)
			return res, nil
		}
	}
}

// sessionChanged reports whether a write's result says its session moved
// on without it. After several copies were proposed, that does not mean it
// was not applied: a copy may have been, before kv forgot the session.
func sessionChanged(err error) bool {
	return err == kv.ErrSessionExpired || err == kv.ErrRequestTooOld
}

// unknownOutcome is the error of a write that may or may not be applied.
func (s *Server) unknownOutcome(cause error) error {
	return &UnavailableError{Write: true, Unknown: true, Wait: s.cfg.Timeout, Cause: cause}
}

// replicate proposes data until it is applied or ctx ends, and returns the
// result and how many copies may have reached raft. It proposes again when
// no leader was known (nothing reached raft) and when a copy stays
// unapplied for Config.ProposalTimeout (it was probably lost in a leader
// change): data carries a request id, so an extra copy is never applied twice.
func (s *Server) replicate(ctx context.Context, data []byte) (kv.Result, int, error) {
	proposed := 0
	delay := retryMin
	for {
		// Taken before the attempt, so a leader elected while it fails is
		// not missed.
		changed := s.node.StatusChanged()
		actx, cancel := context.WithTimeout(ctx, s.cfg.ProposalTimeout)
		v, err := s.node.Propose(actx, data)
		cancel()
		s.metrics.proposals.Inc()
		if err == nil {
			res, ok := v.(kv.Result)
			if !ok {
				return kv.Result{}, proposed + 1, fmt.Errorf("the state machine returned %T, not a kv.Result: is it a server.StateMachine?", v)
			}
			return res, proposed + 1, nil
		}
		unknown := errors.Is(err, node.ErrOutcomeUnknown)
		if unknown {
			proposed++
		}
		if ctx.Err() != nil || errors.Is(err, node.ErrStopped) {
			return kv.Result{}, proposed, &UnavailableError{Write: true, Unknown: proposed > 0, Wait: s.cfg.Timeout, Cause: err}
		}
		s.metrics.proposalRetries.Inc()
		switch {
		case unknown, errors.Is(err, context.DeadlineExceeded):
			// This attempt's own deadline passed: propose again now.
			continue
		case errors.Is(err, node.ErrNoLeader):
			if !pause(ctx, &delay, changed) {
				return kv.Result{}, proposed, &UnavailableError{Write: true, Unknown: proposed > 0, Wait: s.cfg.Timeout, Cause: err}
			}
		default:
			if proposed > 0 {
				return kv.Result{}, proposed, &UnavailableError{Write: true, Unknown: true, Wait: s.cfg.Timeout, Cause: err}
			}
			return kv.Result{}, proposed, err
		}
	}
}

// read answers a read-only command: after a read index unless stale, so
// that the answer is linearizable.
func (s *Server) read(ctx context.Context, c *kv.Command, stale bool) (kv.Result, error) {
	if err := c.Validate(); err != nil {
		return kv.Result{Err: err}, nil
	}
	if !stale {
		if err := s.readIndex(ctx); err != nil {
			return kv.Result{}, err
		}
	}
	return s.store.Read(c), nil
}

// readIndex returns once the local store has applied everything committed
// when it was called, retrying while no leader is known, for at most
// Config.Timeout.
func (s *Server) readIndex(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	delay := retryMin
	for {
		changed := s.node.StatusChanged()
		s.metrics.readIndexes.Inc()
		err := s.node.ReadIndex(ctx)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, node.ErrNoLeader) && pause(ctx, &delay, changed):
			continue
		case ctx.Err() != nil, errors.Is(err, node.ErrNoLeader), errors.Is(err, node.ErrStopped):
			return &UnavailableError{Wait: s.cfg.Timeout, Cause: err}
		default:
			return err
		}
	}
}

// pause waits *delay, or until changed closes, then doubles *delay up to
// retryMax. It reports false if ctx ended first.
func pause(ctx context.Context, delay *time.Duration, changed <-chan struct{}) bool {
	t := time.NewTimer(*delay)
	defer t.Stop()
	*delay = min(2**delay, retryMax)
	select {
	case <-t.C:
		return true
	case <-changed:
		return true
	case <-ctx.Done():
		return false
	}
}
