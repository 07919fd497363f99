// Package client is a Go client for raftkv's HTTP API.
//
// A Client is given the HTTP endpoints of some or all of the cluster's
// nodes. Any node serves any request, but the client prefers the leader
// (a follower forwards writes and read-index requests to it, one more hop):
// it asks the nodes' /v1/status which one leads, and moves to another node
// when the one it uses stops answering or has no leader.
//
// Every call takes a context and is retried, until the context ends or the
// client's timeout passes, on connection errors and on 503 replies. Retries
// are safe: every write carries a request id (a random client session id
// and a sequence number, in the Raftkv-Request-Id header) that the cluster
// applies at most once, whichever node receives each copy. When a call
// gives up after a copy of a write may have reached the cluster, its error
// wraps ErrOutcomeUnknown: the write may or may not be applied.
//
//	c, err := client.New([]string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"})
//	_, err = c.Put(ctx, "greeting", []byte("hello"))
//	v, err := c.Get(ctx, "greeting")
package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by a Client, matched with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("raftkv: key not found")
	// ErrUnavailable: no node served the request before the context ended
	// or the client's timeout passed. The error also wraps the last
	// failure.
	ErrUnavailable = errors.New("raftkv: no node could serve the request")
	// ErrOutcomeUnknown: a write gave up after a copy of it may have
	// reached the cluster; it may or may not be applied. Only a read can
	// tell. Errors wrapping it also wrap ErrUnavailable.
	ErrOutcomeUnknown = errors.New("raftkv: write outcome unknown")
)

// Error is an error reply from a node, such as 400 for bad input or 409
// for incrementing a value that is not an integer.
type Error struct {
	StatusCode int
	// Code is the server's machine-readable code (bad_request, not_found,
	// too_large, not_integer, ...).
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("raftkv: %s (HTTP %d, %s)", e.Message, e.StatusCode, e.Code)
}

// Is makes a reply match the sentinel of its code: ErrNotFound for
// not_found, ErrNotMember for not_member, and so on.
func (e *Error) Is(target error) bool {
	sentinel, ok := errorCodes[e.Code]
	return ok && target == sentinel
}

// Client talks to a raftkv cluster over HTTP. It is safe for concurrent use.
type Client struct {
	endpoints []string // base URLs without a trailing slash
	hc        *http.Client
	timeout   time.Duration
	backoff   [2]time.Duration // first and longest pause between rounds of retries

	cur        atomic.Int64 // index of the endpoint tried first
	rediscover atomic.Bool  // look for the leader before the next attempt

	discoverMu sync.Mutex // held by the one goroutine discovering; guards lastDisc
	lastDisc   time.Time

	sessMu sync.Mutex // guards idle
	idle   []*session
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc (for TLS,
// proxies, or transport tuning). Its Timeout, if any, bounds each attempt.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTimeout bounds each call, retries included, when its context has no
// earlier deadline. Default 10s.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithBackoff sets the first and the longest pause between rounds of
// retries. Default 20ms and 500ms.
func WithBackoff(first, longest time.Duration) Option {
	return func(c *Client) { c.backoff = [2]time.Duration{first, longest} }
}

// New returns a client for the nodes at endpoints, each a base URL
// ("http://127.0.0.1:8081") or a host:port.
func New(endpoints []string, opts ...Option) (*Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("raftkv client: no endpoints")
	}
	c := &Client{
		hc:      &http.Client{},
		timeout: 10 * time.Second,
		backoff: [2]time.Duration{20 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, e := range endpoints {
		if !strings.Contains(e, "://") {
			e = "http://" + e
		}
		u, err := url.Parse(e)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("raftkv client: bad endpoint %q", e)
		}
		c.endpoints = append(c.endpoints, strings.TrimSuffix(u.String(), "/"))
	}
	for _, o := range opts {
		o(c)
	}
	if c.timeout <= 0 || c.backoff[0] <= 0 || c.backoff[1] < c.backoff[0] {
		return nil, errors.New("raftkv client: timeout and backoff must be positive, the longest backoff at least the first")
	}
	c.rediscover.Store(true)
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// ReadOption changes how a read is served.
type ReadOption func(url.Values)

// Stale lets the node that receives the read answer from its local state
// without confirming it is up to date: faster, available without a
// leader, and possibly stale.
func Stale() ReadOption { return func(q url.Values) { q.Set("consistency", "stale") } }

// Get returns the value of key, or an error wrapping ErrNotFound.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) ([]byte, error) {
	q := url.Values{}
	for _, o := range opts {
		o(q)
	}
	return c.do(ctx, request{method: http.MethodGet, path: keyPath(key), query: q})
}

// PutOption is a condition or extra of Put.
type PutOption func(url.Values)

// IfAbsent writes only if the key does not exist.
func IfAbsent() PutOption { return func(q url.Values) { q.Set("nx", "") } }

// IfPresent writes only if the key exists.
func IfPresent() PutOption { return func(q url.Values) { q.Set("xx", "") } }

// ReturnPrevious asks for the value the write replaced.
func ReturnPrevious() PutOption { return func(q url.Values) { q.Set("prev", "") } }

// PutResult is what Put did.
type PutResult struct {
	// Written is false when IfAbsent or IfPresent kept the write from
	// happening.
	Written bool
	// Prev and PrevFound are the replaced value, with ReturnPrevious.
	Prev      []byte
	PrevFound bool
}

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...PutOption) (PutResult, error) {
	q := url.Values{"encoding": {"base64"}}
	for _, o := range opts {
		o(q)
	}
	var out struct {
		Written   bool    `json:"written"`
		Prev      *string `json:"prev"`
		PrevFound bool    `json:"prev_found"`
	}
	if err := c.doJSON(ctx, request{method: http.MethodPut, path: keyPath(key), query: q, body: value, write: true}, &out); err != nil {
		return PutResult{}, err
	}
	res := PutResult{Written: out.Written, PrevFound: out.PrevFound}
	if out.Prev != nil {
		prev, err := base64.StdEncoding.DecodeString(*out.Prev)
		if err != nil {
			return PutResult{}, fmt.Errorf("raftkv: bad previous value in reply: %w", err)
		}
		res.Prev = prev
	}
	return res, nil
}

// CAS sets key to value only if its current value is expected, byte for
// byte (a missing key never matches), and reports whether it did.
func (c *Client) CAS(ctx context.Context, key string, expected, value []byte) (bool, error) {
	var out struct {
		Swapped bool `json:"swapped"`
	}
	q := url.Values{"cas": {string(expected)}}
	err := c.doJSON(ctx, request{method: http.MethodPut, path: keyPath(key), query: q, body: value, write: true}, &out)
	return out.Swapped, err
}

// Delete removes key and reports whether it existed.
func (c *Client) Delete(ctx context.Context, key string) (bool, error) {
	var out struct {
		Deleted bool `json:"deleted"`
	}
	err := c.doJSON(ctx, request{method: http.MethodDelete, path: keyPath(key), write: true}, &out)
	return out.Deleted, err
}

// Incr adds by to the integer value of key (a missing key counts as 0) and
// returns the new value.
func (c *Client) Incr(ctx context.Context, key string, by int64) (int64, error) {
	var out struct {
		Value int64 `json:"value"`
	}
	q := url.Values{"by": {strconv.FormatInt(by, 10)}}
	err := c.doJSON(ctx, request{method: http.MethodPost, path: keyPath(key) + "/incr", query: q, write: true}, &out)
	return out.Value, err
}

// ListOptions select a page of keys.
type ListOptions struct {
	// Prefix restricts the listing to keys that start with it.
	Prefix string
	// Limit is the most keys in the page; 0 means the server's default
	// (100). The server caps it at 1000.
	Limit int
	// Cursor is the Page.Cursor of the previous page; empty for the first.
	Cursor string
	// Stale allows a possibly stale answer from the local state (see
	// Stale).
	Stale bool
}

// Page is one page of a listing.
type Page struct {
	// Keys are in ascending byte order.
	Keys []string
	// Cursor fetches the next page; empty when the listing is complete.
	Cursor string
}

// List returns a page of keys in order.
func (c *Client) List(ctx context.Context, opts ListOptions) (Page, error) {
	q := url.Values{"encoding": {"base64"}}
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	if opts.Stale {
		Stale()(q)
	}
	var out struct {
		Keys   []string `json:"keys"`
		Cursor string   `json:"cursor"`
	}
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/v1/kv/", query: q}, &out); err != nil {
		return Page{}, err
	}
	p := Page{Keys: make([]string, len(out.Keys)), Cursor: out.Cursor}
	for i, k := range out.Keys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return Page{}, fmt.Errorf("raftkv: bad key in listing: %w", err)
		}
		p.Keys[i] = string(b)
	}
	return p, nil
}

func keyPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

// request is one API call.
type request struct {
	method string
	path   string // escaped
	query  url.Values
	body   []byte
	write  bool // carries a request id
}

func (c *Client) doJSON(ctx context.Context, r request, out any) error {
	body, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("raftkv: decode reply to %s %s: %w", r.method, r.path, err)
	}
	return nil
}

// do sends r until a node answers it with something other than 503, and
// returns the body of a 2xx reply or the error reply as an *Error.
func (c *Client) do(ctx context.Context, r request) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var sess *session
	var id string
	maybeApplied := false // a copy of the write may have reached the cluster
	if r.write {
		sess = c.getSession()
		id = sess.next()
	}
	// keep says whether sess may be reused: not after an unknown outcome.
	done := func(keep bool) {
		if sess != nil {
			c.putSession(sess, keep)
		}
	}
	pause := c.backoff[0]
	var last error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 && attempt%len(c.endpoints) == 0 {
			if !sleep(ctx, pause) {
				break
			}
			pause = min(2*pause, c.backoff[1])
		}
		ep := c.endpoint(ctx)
		status, body, sent, err := c.send(ctx, ep, r, id)
		if err != nil {
			last = err
			maybeApplied = maybeApplied || (r.write && sent)
			c.failover(ep)
			continue
		}
		if status == http.StatusServiceUnavailable {
			e := replyError(status, body)
			last = e.err
			maybeApplied = maybeApplied || (r.write && e.outcome == "unknown")
			c.failover(ep)
			continue
		}
		if status >= 200 && status < 300 {
			done(true)
			return body, nil
		}
		e := replyError(status, body)
		if e.err.Code == "session_expired" && !maybeApplied {
			// The cluster forgot this idle session, and no copy of the
			// write was applied: go on under a new session.
			c.putSession(sess, false)
			sess = c.getSession()
			id = sess.next()
			continue
		}
		if e.err.Code == "session_expired" || e.err.Code == "request_too_old" {
			done(false)
			return nil, fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrOutcomeUnknown, e.err)
		}
		done(true)
		return nil, e.err
	}
	done(!maybeApplied)
	err := fmt.Errorf("%w: %w (last error: %v)", ErrUnavailable, ctx.Err(), last)
	if maybeApplied {
		err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	return nil, err
}

// send makes one attempt. sent is false when the request surely never
// reached the node (the connection was refused).
func (c *Client) send(ctx context.Context, ep string, r request, id string) (status int, body []byte, sent bool, err error) {
	u := ep + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, bytes.NewReader(r.body))
	if err != nil {
		return 0, nil, false, err
	}
	if id != "" {
		req.Header.Set("Raftkv-Request-Id", id)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		return 0, nil, !(errors.As(err, &op) && op.Op == "dial"), err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes+1))
	switch {
	case err != nil:
		return 0, nil, true, fmt.Errorf("read reply from %s: %w", ep, err)
	case len(body) > maxReplyBytes:
		return 0, nil, true, fmt.Errorf("read reply from %s: longer than %d bytes", ep, maxReplyBytes)
	}
	return resp.StatusCode, body, true, nil
}

// maxReplyBytes bounds a reply the client reads. The longest a node sends
// is a value (8 MiB, a third more in base64) or a page of keys (1 MiB,
// longer once escaped in JSON), so this is generous; a longer reply is not
// from a raftkv node.
const maxReplyBytes = 64 << 20

// replyErr is an error reply with the write outcome 503s carry.
type replyErr struct {
	err     *Error
	outcome string
}

func replyError(status int, body []byte) *replyErr {
	var j struct {
		Error   string `json:"error"`
		Code    string `json:"code"`
		Outcome string `json:"outcome"`
	}
	if json.Unmarshal(body, &j) != nil || j.Error == "" {
		j.Error = strings.TrimSpace(string(body))
	}
	return &replyErr{err: &Error{StatusCode: status, Code: j.Code, Message: j.Error}, outcome: j.Outcome}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// session is a kv client session: one request at a time.
type session struct {
	id  uint64
	seq uint64
}

func (s *session) next() string {
	s.seq++
	return strconv.FormatUint(s.id, 10) + ":" + strconv.FormatUint(s.seq, 10)
}

// getSession returns an idle session, or a new one with a random id
// (never 0, which means "no session" to the server).
func (c *Client) getSession() *session {
	c.sessMu.Lock()
	if n := len(c.idle); n > 0 {
		s := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.sessMu.Unlock()
		return s
	}
	c.sessMu.Unlock()
	var b [8]byte
	for {
		crand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return &session{id: id}
		}
	}
}

// putSession gives a session back for reuse, unless keep is false.
func (c *Client) putSession(s *session, keep bool) {
	if !keep {
		return
	}
	c.sessMu.Lock()
	c.idle = append(c.idle, s)
	c.sessMu.Unlock()
}
