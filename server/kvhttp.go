package server

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// RequestIDHeader carries an HTTP client's own request id for a write,
// as "<client id>:<seq>" in decimal (see kv.RequestID for the rules). A
// client that retries a write with the same id gets it applied at most
// once, even across nodes. Without it the server uses its own sessions,
// which only cover the server's internal retries.
const RequestIDHeader = "Raftkv-Request-Id"

// DefaultListLimit is the page size of GET /v1/kv/ without ?limit.
const DefaultListLimit = 100

// ErrorJSON is the body of every HTTP error reply.
type ErrorJSON struct {
	Error string `json:"error"`
	// Code is a stable machine-readable name: bad_request, not_found,
	// too_large, not_integer, session_expired, request_too_old,
	// unavailable, internal; for membership changes also not_leader,
	// not_member, member_exists, last_voter, already_voter,
	// change_pending, invalid_change, wrong_cluster.
	Code string `json:"code"`
	// Outcome, for a write that failed as unavailable, is "unknown" (it may
	// still be applied) or "not_applied".
	Outcome string `json:"outcome,omitempty"`
	// Leader, with code not_leader, names the leader that can serve the
	// request.
	Leader string `json:"leader,omitempty"`
}

// PutJSON is the body of a successful PUT.
type PutJSON struct {
	// Written is false when ?nx or ?xx kept the value from being written.
	Written bool `json:"written"`
	// Prev and PrevFound are the previous value, with ?prev.
	Prev      *string `json:"prev,omitempty"`
	PrevFound *bool   `json:"prev_found,omitempty"`
}

// CASJSON is the body of a successful PUT ?cas=.
type CASJSON struct {
	Swapped bool `json:"swapped"`
}

// DeleteJSON is the body of a successful DELETE.
type DeleteJSON struct {
	Deleted bool `json:"deleted"`
}

// IncrJSON is the body of a successful POST .../incr.
type IncrJSON struct {
	Value int64 `json:"value"`
}

// AppendJSON is the body of a successful POST .../append.
type AppendJSON struct {
	Length int64 `json:"length"`
}

// ListJSON is the body of GET /v1/kv/.
type ListJSON struct {
	Keys []string `json:"keys"`
	// Cursor is passed back as ?cursor= for the next page; empty when the
	// listing is complete.
	Cursor string `json:"cursor"`
}

// apiError is an HTTP error reply.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

// serveKV serves /v1/kv/<rest>, rest being the escaped path after it.
func (s *Server) serveKV(w http.ResponseWriter, r *http.Request, rest string) {
	start := time.Now()
	var op string
	var err error
	select {
	case s.httpKV <- struct{}{}:
		func() {
			defer func() { <-s.httpKV }()
			op, err = s.kvRequest(w, r, rest)
		}()
	default:
		// Refused before the body is read: nothing was done.
		w.Header().Set("Retry-After", "1")
		op, err = "busy", &apiError{http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("%d key-value requests already in progress (MaxClients)", s.cfg.MaxClients)}
	}
	kind := ""
	if err != nil {
		kind = writeHTTPError(w, err)
	}
	s.metrics.observe("http", op, start, kind)
}

// kvRequest runs one key-value request and writes its successful reply. It
// returns the operation's name (for metrics) and the error to reply with.
func (s *Server) kvRequest(w http.ResponseWriter, r *http.Request, rest string) (string, error) {
	q := r.URL.Query()
	enc, err := valueEncoding(q)
	if err != nil {
		return "bad", err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if rest == "" {
			return "list", s.httpList(w, r, q, enc)
		}
		return "get", s.httpGet(w, r, q, rest)
	case http.MethodPut:
		if q.Has("cas") {
			return "cas", s.httpCAS(w, r, q, rest)
		}
		return "put", s.httpPut(w, r, q, rest, enc)
	case http.MethodDelete:
		return "delete", s.httpDelete(w, r, rest)
	case http.MethodPost:
		if key, ok := strings.CutSuffix(rest, "/incr"); ok {
			return "incr", s.httpIncr(w, r, q, key)
		}
		if key, ok := strings.CutSuffix(rest, "/append"); ok {
			return "append", s.httpAppend(w, r, key)
		}
		return "bad", &apiError{http.StatusNotFound, "not_found", "POST takes /v1/kv/<key>/incr or /v1/kv/<key>/append"}
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE, POST")
		return "bad", &apiError{http.StatusMethodNotAllowed, "bad_request", "method not allowed"}
	}
}

func (s *Server) httpGet(w http.ResponseWriter, r *http.Request, q url.Values, rest string) error {
	key, err := pathKey(rest)
	if err != nil {
		return err
	}
	stale, err := staleRead(q)
	if err != nil {
		return err
	}
	c := kv.Command{Op: kv.OpGet, Key: key}
	res, err := s.read(r.Context(), &c, stale)
	if err = firstErr(err, res.Err); err != nil {
		return err
	}
	if !res.Value.Found {
		return &apiError{http.StatusNotFound, "not_found", "key not found"}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(res.Value.Data)))
	w.WriteHeader(http.StatusOK)
	w.Write(res.Value.Data)
	return nil
}

func (s *Server) httpList(w http.ResponseWriter, r *http.Request, q url.Values, enc valueEnc) error {
	stale, err := staleRead(q)
	if err != nil {
		return err
	}
	c := kv.Command{Op: kv.OpScan, Prefix: []byte(q.Get("prefix")), Limit: DefaultListLimit}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badRequest("limit must be a positive integer")
		}
		c.Limit = min(n, kv.MaxScanLimit)
	}
	if c.Key, err = base64.RawURLEncoding.DecodeString(q.Get("cursor")); err != nil {
		return badRequest("cursor is not one this API returned")
	}
	res, err := s.read(r.Context(), &c, stale)
	if err = firstErr(err, res.Err); err != nil {
		return err
	}
	out := ListJSON{Keys: make([]string, len(res.Keys)), Cursor: base64.RawURLEncoding.EncodeToString(res.Cursor)}
	for i, k := range res.Keys {
		out.Keys[i] = enc.encode(k)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) httpPut(w http.ResponseWriter, r *http.Request, q url.Values, rest string, enc valueEnc) error {
	c := kv.Command{Op: kv.OpSet}
	var err error
	for _, f := range []struct {
		name string
		to   *bool
	}{{"nx", &c.NX}, {"xx", &c.XX}, {"prev", &c.GetOld}} {
		if *f.to, err = queryFlag(q, f.name); err != nil {
			return err
		}
	}
	if c.NX && c.XX {
		return badRequest("nx and xx exclude each other")
	}
	return s.httpWrite(w, r, &c, rest, func(res kv.Result) any {
		out := PutJSON{Written: res.Int == 1}
		if c.GetOld {
			prev := enc.encode(res.Value.Data)
			out.Prev, out.PrevFound = &prev, &res.Value.Found
		}
		return out
	})
}

func (s *Server) httpCAS(w http.ResponseWriter, r *http.Request, q url.Values, rest string) error {
	for _, f := range []string{"nx", "xx", "prev"} {
		if q.Has(f) {
			return badRequest("cas takes no %s", f)
		}
	}
	c := kv.Command{Op: kv.OpCAS, Expected: []byte(q.Get("cas"))}
	return s.httpWrite(w, r, &c, rest, func(res kv.Result) any { return CASJSON{Swapped: res.Int == 1} })
}

func (s *Server) httpDelete(w http.ResponseWriter, r *http.Request, rest string) error {
	c := kv.Command{Op: kv.OpDel}
	return s.httpWrite(w, r, &c, rest, func(res kv.Result) any { return DeleteJSON{Deleted: res.Int > 0} })
}

func (s *Server) httpIncr(w http.ResponseWriter, r *http.Request, q url.Values, rest string) error {
	c := kv.Command{Op: kv.OpIncrBy, Delta: 1}
	if v := q.Get("by"); v != "" {
		by, err := kv.ParseInt([]byte(v))
		if err != nil {
			return badRequest("by must be a 64-bit integer")
		}
		c.Delta = by
	}
	return s.httpWrite(w, r, &c, rest, func(res kv.Result) any { return IncrJSON{Value: res.Int} })
}

func (s *Server) httpAppend(w http.ResponseWriter, r *http.Request, rest string) error {
	c := kv.Command{Op: kv.OpAppend}
	return s.httpWrite(w, r, &c, rest, func(res kv.Result) any { return AppendJSON{Length: res.Int} })
}

// httpWrite completes c from the request (the key from the path, the
// request id from RequestIDHeader, the value from the body for the ops
// that take one), replicates it and replies with reply's JSON.
func (s *Server) httpWrite(w http.ResponseWriter, r *http.Request, c *kv.Command, rest string, reply func(kv.Result) any) error {
	key, err := pathKey(rest)
	if err != nil {
		return err
	}
	if c.Op == kv.OpDel {
		c.Keys = [][]byte{key}
	} else {
		c.Key = key
	}
	if c.ID, err = requestID(r.Header.Get(RequestIDHeader)); err != nil {
		return err
	}
	switch c.Op {
	case kv.OpSet, kv.OpCAS, kv.OpAppend:
		if c.Value, err = readBody(w, r); err != nil {
			return err
		}
	}
	res, err := s.write(r.Context(), c)
	if err = firstErr(err, res.Err); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, reply(res))
	return nil
}

// pathKey decodes the key from the escaped path after /v1/kv/.
func pathKey(rest string) ([]byte, error) {
	key, err := url.PathUnescape(rest)
	switch {
	case err != nil:
		return nil, badRequest("bad escape in key: %v", err)
	case key == "":
		return nil, badRequest("missing key: use /v1/kv/<key>")
	case len(key) > kv.MaxKeySize:
		return nil, kv.ErrKeyTooLarge
	}
	return []byte(key), nil
}

// requestID parses RequestIDHeader; empty means none.
func requestID(h string) (kv.RequestID, error) {
	if h == "" {
		return kv.RequestID{}, nil
	}
	client, seq, ok := strings.Cut(h, ":")
	c, err1 := strconv.ParseUint(client, 10, 64)
	n, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil || c == 0 || n == 0 {
		return kv.RequestID{}, badRequest("%s must be <client id>:<seq>, two positive decimal integers", RequestIDHeader)
	}
	return kv.RequestID{ClientID: c, Seq: n}, nil
}

// readBody reads a value of at most kv.MaxValueSize bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > kv.MaxValueSize {
		return nil, kv.ErrValueTooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, kv.MaxValueSize))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, kv.ErrValueTooLarge
	case err != nil:
		return nil, badRequest("read body: %v", err)
	}
	return b, nil
}

// queryFlag reads a boolean query parameter: present with no value, "1"
// or "true" is true.
func queryFlag(q url.Values, name string) (bool, error) {
	if !q.Has(name) {
		return false, nil
	}
	switch strings.ToLower(q.Get(name)) {
	case "", "1", "true", "yes":
		return true, nil
	case "0", "false", "no":
		return false, nil
	}
	return false, badRequest("%s must be true or false", name)
}

// staleRead reads ?consistency=: linearizable (the default) or stale.
func staleRead(q url.Values) (bool, error) {
	switch q.Get("consistency") {
	case "", "linearizable":
		return false, nil
	case "stale":
		return true, nil
	}
	return false, badRequest("consistency must be linearizable or stale")
}

// valueEnc is how keys and values appear in JSON replies: as strings
// (bytes that are not UTF-8 become U+FFFD), or base64 for exact bytes.
type valueEnc bool

const encBase64 valueEnc = true

func valueEncoding(q url.Values) (valueEnc, error) {
	switch q.Get("encoding") {
	case "", "utf8", "utf-8":
		return false, nil
	case "base64":
		return encBase64, nil
	}
	return false, badRequest("encoding must be utf-8 or base64")
}

func (e valueEnc) encode(b []byte) string {
	if e == encBase64 {
		return base64.StdEncoding.EncodeToString(b)
	}
	return string(b)
}

func firstErr(err, resErr error) error {
	if err != nil {
		return err
	}
	return resErr
}

// writeHTTPError writes err as an ErrorJSON reply and returns its metrics
// kind.
func writeHTTPError(w http.ResponseWriter, err error) string {
	var (
		ae *apiError
		ue *UnavailableError
		ke *kv.Error
	)
	out := ErrorJSON{Error: err.Error()}
	status, kind := http.StatusInternalServerError, errKindClient
	switch {
	case errors.As(err, &ae):
		status, out.Code = ae.status, ae.code
	case errors.As(err, &ue):
		status, out.Code, kind = http.StatusServiceUnavailable, "unavailable", errKindUnavailable
		if ue.Write {
			out.Outcome = "not_applied"
			if ue.Unknown {
				out.Outcome = "unknown"
			}
		}
		w.Header().Set("Retry-After", "1")
	case errors.As(err, &ke):
		status, out.Code = kvErrorStatus(ke)
		out.Error = strings.TrimPrefix(ke.Error(), "ERR ")
	default:
		out.Code, kind = "internal", errKindInternal
	}
	writeJSON(w, status, out)
	return kind
}

// kvErrorStatus maps kv's errors to an HTTP status and error code.
func kvErrorStatus(e *kv.Error) (int, string) {
	switch e {
	case kv.ErrKeyTooLarge, kv.ErrValueTooLarge, kv.ErrCommandTooLarge, kv.ErrTooManyKeys:
		return http.StatusRequestEntityTooLarge, "too_large"
	case kv.ErrNotInteger, kv.ErrOverflow:
		return http.StatusConflict, "not_integer"
	case kv.ErrSessionExpired:
		return http.StatusConflict, "session_expired"
	case kv.ErrRequestTooOld:
		return http.StatusConflict, "request_too_old"
	case kv.ErrSyntax, kv.ErrBadRequestID:
		return http.StatusBadRequest, "bad_request"
	}
	return http.StatusInternalServerError, "internal"
}
