package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
)

// Node is what the server needs from a running node; *node.Node implements
// it.
type Node interface {
	// Propose replicates data and returns the state machine's result.
	Propose(ctx context.Context, data []byte) (any, error)
	// ReadIndex returns once the local state machine may serve a
	// linearizable read.
	ReadIndex(ctx context.Context) error
	// TransferLeadership hands leadership to member to and returns once
	// this node sees to lead.
	TransferLeadership(ctx context.Context, to uint64) error
	// AddMember, AddJoiner, RemoveMember and PromoteMember change the
	// membership (on the leader only; see node.Node).
	AddMember(ctx context.Context, name, peerAddr string, learner bool) (node.MemberState, error)
	AddJoiner(ctx context.Context, name, peerAddr string) (node.MemberState, error)
	RemoveMember(ctx context.Context, id uint64) error
	PromoteMember(ctx context.Context, id uint64) error
	// LeaderClientURL returns the leader's client URL, for redirects.
	LeaderClientURL(ctx context.Context) (string, error)
	Status() node.Status
	// StatusChanged returns a channel closed at the node's next change of
	// role, leader or term.
	StatusChanged() <-chan struct{}
	// Stats returns the node's cumulative counts, for /metrics.
	Stats() node.Stats
	// Done is closed once the node stops serving.
	Done() <-chan struct{}
}

var _ Node = (*node.Node)(nil)

// Defaults for Config fields left zero.
const (
	// DefaultTimeout stays below go-redis' default 3s read timeout, so that
	// clients get -TRYAGAIN rather than a timeout that hides whether the
	// write happened.
	DefaultTimeout         = 2 * time.Second
	DefaultProposalTimeout = time.Second
	DefaultMaxClients      = 10000
)

// Config configures a Server. Node and StateMachine are required, and at
// least one of the RESP and HTTP listeners.
type Config struct {
	// RedisAddr is the address to serve RESP on; RedisListener, if set, is
	// used instead. Neither: no RESP.
	RedisAddr     string
	RedisListener net.Listener
	// HTTPAddr is the address to serve HTTP on; HTTPListener, if set, is
	// used instead. Neither: no HTTP.
	HTTPAddr     string
	HTTPListener net.Listener

	// Node is the running node requests go through.
	Node Node
	// StateMachine is the adapter the node applies to; the server reads
	// its store.
	StateMachine *StateMachine
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger

	// Timeout bounds how long a request waits for a leader and then for
	// its commit or read index before it fails (-TRYAGAIN, HTTP 503).
	// Default DefaultTimeout.
	Timeout time.Duration
	// ProposalTimeout is how long a proposal may stay unapplied before the
	// server proposes it again under the same request id: a proposal lost
	// in a leader change is never applied, so only a new copy gets through.
	// About an election timeout suits. Default DefaultProposalTimeout.
	ProposalTimeout time.Duration
	// Sessions bounds the writes in flight, each under its own kv session.
	// Default DefaultSessions; at most kv.MaxSessions.
	Sessions int
	// MaxClients bounds open RESP connections; more are refused as Redis
	// does. It also bounds the HTTP key-value requests in progress, each of
	// which may hold a value in memory; more get 503. Default
	// DefaultMaxClients.
	MaxClients int
	// Registry receives the server's metrics and is what /metrics serves.
	// Nil: a new private registry. Pass one to expose other collectors
	// (storage, transport) on the same endpoint.
	Registry *prometheus.Registry
}

// Validate checks the fields against each other.
func (c *Config) Validate() error {
	switch {
	case c.Node == nil:
		return errors.New("server config: Node is required")
	case c.StateMachine == nil:
		return errors.New("server config: StateMachine is required")
	case c.RedisAddr == "" && c.RedisListener == nil && c.HTTPAddr == "" && c.HTTPListener == nil:
		return errors.New("server config: neither a RESP nor an HTTP address")
	case c.Timeout < 0, c.ProposalTimeout < 0:
		return errors.New("server config: negative timeout")
	case c.Sessions < 0 || c.Sessions > kv.MaxSessions:
		return fmt.Errorf("server config: Sessions must be within [0, %d]", kv.MaxSessions)
	case c.MaxClients < 0:
		return errors.New("server config: negative MaxClients")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ProposalTimeout == 0 {
		c.ProposalTimeout = DefaultProposalTimeout
	}
	if c.Sessions == 0 {
		c.Sessions = DefaultSessions
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	return c
}

// ErrServerClosed is returned by Start after Shutdown or Close.
var ErrServerClosed = errors.New("server: closed")

// Server serves one node's key-value store over RESP and HTTP. Create it
// with New, which binds the listeners, then Start it; Shutdown drains it
// and Close stops it at once. All methods are safe for concurrent use, and
// Shutdown and Close may be called any number of times.
type Server struct {
	cfg      Config
	log      *slog.Logger
	node     Node
	sm       *StateMachine
	store    *kv.Store
	sessions *sessionPool
	cursors  *cursorTable
	httpKV   chan struct{} // a token per HTTP key-value request in progress
	metrics  *metrics
	started  time.Time

	// ctx is the parent of every request's context; Close cancels it so
	// that requests still waiting on raft give up.
	ctx    context.Context
	cancel context.CancelFunc

	resp    *respServer  // nil without a RESP listener
	httpSrv *http.Server // nil without an HTTP listener
	httpLn  net.Listener
	handler http.Handler

	mu      sync.Mutex // guards running and closed
	running bool
	closed  bool
	wg      sync.WaitGroup // the goroutines Start started
}

// New checks cfg, binds the listeners it names and returns a server that
// is not yet serving: a port in use is reported here, before Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		node:     cfg.Node,
		sm:       cfg.StateMachine,
		store:    cfg.StateMachine.Store(),
		sessions: newSessionPool(cfg.Sessions),
		cursors:  newCursorTable(),
		httpKV:   make(chan struct{}, cfg.MaxClients),
		started:  time.Now(),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var err error
	if s.metrics, err = newMetrics(cfg.Registry, s); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	s.handler = s.newHTTPHandler()

	redisLn, httpLn := cfg.RedisListener, cfg.HTTPListener
	if redisLn == nil && cfg.RedisAddr != "" {
		if redisLn, err = net.Listen("tcp", cfg.RedisAddr); err != nil {
			return nil, fmt.Errorf("listen for RESP: %w", err)
		}
	}
	if httpLn == nil && cfg.HTTPAddr != "" {
		if httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			if redisLn != nil {
				redisLn.Close()
			}
			return nil, fmt.Errorf("listen for HTTP: %w", err)
		}
	}
	if redisLn != nil {
		s.resp = newRESPServer(s, redisLn)
	}
	if httpLn != nil {
		s.httpLn = httpLn
		s.httpSrv = &http.Server{
			Handler: s.handler,
			// Generous for an 8 MiB body on a slow link, but a client that
			// trickles or stalls cannot hold a connection forever.
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       time.Minute,
			WriteTimeout:      time.Minute,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			BaseContext:       func(net.Listener) context.Context { return s.ctx },
		}
	}
	return s, nil
}

// RedisAddr returns the address RESP is served on, or "" without RESP.
func (s *Server) RedisAddr() string {
	if s.resp == nil {
		return ""
	}
	return s.resp.ln.Addr().String()
}

// HTTPAddr returns the address HTTP is served on, or "" without HTTP.
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Handler returns the HTTP API, for mounting elsewhere or testing.
func (s *Server) Handler() http.Handler { return s.handler }

// Start serves the listeners in goroutines the server owns and returns at
// once. It fails with ErrServerClosed after Shutdown or Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.running {
		return errors.New("server: already started")
	}
	s.running = true
	if s.resp != nil {
		s.spawn(s.resp.serve)
		s.log.Info("serving RESP", "addr", s.RedisAddr())
	}
	if s.httpSrv != nil {
		s.spawn(func() {
			if err := s.httpSrv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http server stopped", "err", err)
			}
		})
		s.log.Info("serving HTTP", "addr", s.HTTPAddr())
	}
	return nil
}

// spawn runs f in a goroutine Shutdown and Close wait for. Called with mu
// held.
func (s *Server) spawn(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Shutdown stops accepting connections, lets requests in progress finish,
// then closes everything. If ctx ends first it closes at once, as Close
// does, and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginClose()
	var errs []error
	if s.resp != nil {
		errs = append(errs, s.resp.shutdown(ctx))
	}
	if s.httpSrv != nil {
		errs = append(errs, s.httpSrv.Shutdown(ctx))
	}
	err := errors.Join(errs...)
	if err != nil {
		s.Close()
		return err
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// Close closes the listeners and every connection now; requests in progress
// are abandoned (a write among them may still be applied). It returns once
// the server's goroutines have ended.
func (s *Server) Close() error {
	s.beginClose()
	s.cancel()
	var errs []error
	if s.resp != nil {
		errs = append(errs, s.resp.close())
	}
	if s.httpSrv != nil {
		if err := s.httpSrv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// beginClose marks the server closed and closes listeners Start never
// served.
func (s *Server) beginClose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if !s.running {
		if s.resp != nil {
			s.resp.ln.Close()
		}
		if s.httpLn != nil {
			s.httpLn.Close()
		}
	}
}
