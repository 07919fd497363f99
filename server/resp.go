package server

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"github.com/raftkv/raftkv/kv"
)

// MaxRESPRequest bounds one RESP command as sent on the wire: the largest
// command kv accepts plus room for the protocol's framing. A client that
// sends a longer one gets a protocol error and is disconnected, as Redis
// does past its proto-max-bulk-len, before the server buffers more.
const MaxRESPRequest = kv.MaxCommandSize + 64<<10

// respServer serves the Redis protocol. It uses redcon's parser and
// writer, but runs its own accept loop and connection goroutines so that
// it can execute a connection's pipeline in stages (see execute) and drain
// connections on Shutdown.
type respServer struct {
	s        *Server
	ln       net.Listener
	commands map[string]*respCommand
	nextID   atomic.Uint64 // CLIENT ID of the next connection

	mu      sync.Mutex // guards conns and closing
	conns   map[*respConn]struct{}
	closing bool
	wg      sync.WaitGroup // connection goroutines

	stopped  chan struct{} // closed by shutdown or close: ends an accept backoff
	stopOnce sync.Once
}

// respConn is one client connection and its per-connection state, all
// owned by the connection's goroutine except busy (respServer.mu).
type respConn struct {
	id  uint64
	nc  net.Conn
	lim *boundedReader
	rd  *redcon.Reader
	wr  *redcon.Writer

	readonly bool   // READONLY: reads are served locally, possibly stale
	name     string // CLIENT SETNAME
	quit     bool   // QUIT: close once the replies are flushed
	busy     bool   // executing a pipeline: Shutdown lets it finish
}

func newRESPServer(s *Server, ln net.Listener) *respServer {
	return &respServer{s: s, ln: ln, commands: respCommands(), conns: make(map[*respConn]struct{}), stopped: make(chan struct{})}
}

// clients returns the number of open connections.
func (r *respServer) clients() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// serve accepts connections until the listener is closed.
func (r *respServer) serve() {
	var delay time.Duration
	for {
		nc, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: wait instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			r.s.log.Warn("resp accept", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-r.stopped:
				return
			}
			continue
		}
		delay = 0
		r.admit(nc)
	}
}

// stop closes the listener and ends serve, even in an accept backoff.
func (r *respServer) stop() error {
	r.stopOnce.Do(func() { close(r.stopped) })
	return r.ln.Close()
}

// admit starts serving nc, or refuses it past MaxClients.
func (r *respServer) admit(nc net.Conn) {
	lim := &boundedReader{r: nc, max: MaxRESPRequest}
	c := &respConn{id: r.nextID.Add(1), nc: nc, lim: lim, rd: redcon.NewReader(lim), wr: redcon.NewWriter(nc)}
	r.mu.Lock()
	switch {
	case r.closing:
		r.mu.Unlock()
		nc.Close()
		return
	case len(r.conns) >= r.s.cfg.MaxClients:
		r.mu.Unlock()
		c.wr.WriteError("ERR max number of clients reached")
		c.wr.Flush()
		nc.Close()
		return
	}
	r.conns[c] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	r.s.metrics.respClients.Inc()
	go r.serveConn(c)
}

func (r *respServer) serveConn(c *respConn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.nc.Close()
		r.s.metrics.respClients.Dec()
	}()
	// A bug in a command must cost its connection, not the node, as
	// net/http does for a handler.
	defer func() {
		if v := recover(); v != nil {
			r.s.log.Error("resp connection panicked", "client", c.nc.RemoteAddr().String(), "panic", v, "stack", string(debug.Stack()))
		}
	}()
	for {
		if !r.setBusy(c, false) {
			return
		}
		cmds, err := c.rd.ReadCommands()
		c.lim.reset()
		if err != nil {
			r.readFailed(c, err)
			return
		}
		if !r.setBusy(c, true) {
			return // shutting down: nothing of this pipeline ran
		}
		r.execute(c, cmds)
		if c.wr.Flush() != nil || c.quit {
			return
		}
	}
}

// setBusy records whether c is executing, and reports false if the server
// is shutting down and c should end instead.
func (r *respServer) setBusy(c *respConn, busy bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.busy = busy
	return !r.closing
}

// readFailed answers a protocol error or an oversized request before the
// connection is closed; I/O errors just close it.
func (r *respServer) readFailed(c *respConn, err error) {
	switch {
	case errors.Is(err, errRequestTooLarge):
		c.wr.WriteError("ERR Protocol error: " + err.Error())
	case c.lim.err != nil:
		return // the connection failed or the client left
	default:
		// redcon's parse errors read "Protocol error: ...", as Redis'.
		c.wr.WriteError("ERR " + err.Error())
	}
	c.wr.Flush()
}

// shutdown stops accepting, closes idle connections and waits for busy
// ones to finish their pipeline, or until ctx ends.
func (r *respServer) shutdown(ctx context.Context) error {
	r.stop()
	r.mu.Lock()
	r.closing = true
	for c := range r.conns {
		if !c.busy {
			c.nc.Close()
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		r.close()
		<-done
		return ctx.Err()
	}
}

// close closes the listener and every connection, and waits for their
// goroutines.
func (r *respServer) close() error {
	err := r.stop()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	r.mu.Lock()
	r.closing = true
	for c := range r.conns {
		c.nc.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

// errRequestTooLarge is a command longer than MaxRESPRequest.
var errRequestTooLarge = errors.New("request exceeds " + strconv.Itoa(MaxRESPRequest) + " bytes")

// boundedReader fails once more than max bytes are read between two
// resets. The connection loop resets it whenever the parser returns
// commands, so the bytes read in between all belong to one command still
// incomplete: that command is too large.
type boundedReader struct {
	r   io.Reader
	n   int
	max int
	err error // the last error of r, telling I/O failures from parse errors
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n >= b.max {
		return 0, errRequestTooLarge
	}
	if len(p) > b.max-b.n {
		p = p[:b.max-b.n]
	}
	n, err := b.r.Read(p)
	b.n += n
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *boundedReader) reset() { b.n = 0 }

// respCall is one command of a pipeline on its way through execute.
type respCall struct {
	cmd  *respCommand // nil if err is set by lookup
	args [][]byte
	kc   kv.Command // kv commands: what to run
	scan *scanArgs  // SCAN only
	res  kv.Result
	err  error // refused before running, or failed to run
}

// maxStage bounds the writes of one pipeline proposed concurrently, and so
// the goroutines one connection starts.
const maxStage = 1024

// execute runs a pipeline and writes the replies in order.
//
// Redis runs a connection's commands one after the other. Doing that here
// would cost a commit round per command, so a pipeline runs in stages:
// a run of consecutive reads shares one read index; a run of consecutive
// writes to pairwise distinct keys is proposed concurrently (the writes
// commute, so every order gives the same state and replies, and their
// proposals share raft batches); anything else runs alone. Each stage
// starts after the previous one finished, so a read always sees the
// writes sent before it on the connection. Other connections may see
// the writes of one stage land in any order, which linearizability
// allows, as the client sent them without waiting for a reply.
func (r *respServer) execute(c *respConn, cmds []redcon.Command) {
	calls := make([]respCall, len(cmds))
	for i := range cmds {
		r.prepare(&calls[i], cmds[i].Args)
	}
	pending := 0 // bytes of replies written since the last flush
	for i := 0; i < len(calls) && !c.quit; {
		j := stageEnd(calls, i)
		start := time.Now()
		r.runStage(c, calls[i:j])
		for k := i; k < j && !c.quit; k++ {
			r.reply(c, &calls[k], start)
			// A short request can ask for a long reply (GET of a large
			// value), so the replies of a pipeline are not all buffered:
			// past respFlushBytes they go out before the next is written.
			if pending += replyBytes(&calls[k]); pending >= respFlushBytes {
				if c.wr.Flush() != nil {
					return // the client is gone: run nothing more for it
				}
				pending = 0
			}
		}
		i = j
	}
}

// respFlushBytes is how many bytes of values and keys a pipeline's replies
// may hold in the connection's buffer before it is flushed.
const respFlushBytes = 1 << 20

// replyBytes is about the size of call's reply: the data it carries, not
// its framing.
func replyBytes(call *respCall) int {
	n := len(call.res.Value.Data)
	for _, v := range call.res.Values {
		n += len(v.Data)
	}
	for _, k := range call.res.Keys {
		n += len(k)
	}
	return n
}

// prepare looks the command up, checks its arity and parses its
// arguments.
func (r *respServer) prepare(call *respCall, args [][]byte) {
	call.args = args
	name := strings.ToLower(string(args[0]))
	cmd := r.commands[name]
	switch {
	case cmd == nil:
		call.err = unknownCommand(args)
	case cmd.arity > 0 && len(args) != cmd.arity, cmd.arity < 0 && len(args) < -cmd.arity:
		call.cmd = cmd
		call.err = wrongArity(cmd.name)
	default:
		call.cmd = cmd
		if cmd.parse != nil {
			call.err = cmd.parse(r.s, call)
		}
	}
}

// Kinds of stages.
const (
	stageAlone = iota
	stageRead
	stageWrite
)

func stageKind(call *respCall) int {
	switch {
	case call.err != nil:
		return -1 // runs nothing: joins any stage
	case call.cmd.parse == nil:
		return stageAlone
	case call.kc.Op.ReadOnly():
		return stageRead
	default:
		return stageWrite
	}
}

// stageEnd returns the end of the stage that starts at calls[i]: always
// after i, so that execute makes progress.
func stageEnd(calls []respCall, i int) int {
	kind := -1
	var keys map[string]struct{} // keys written by the stage so far
	j := i
	for ; j < len(calls) && j-i < maxStage; j++ {
		k := stageKind(&calls[j])
		switch {
		case k == -1:
			continue
		case kind == -1:
			// The stage's first command: a key it names twice (MSET k 1 k 2)
			// is its own business.
			kind = k
			if k == stageWrite {
				keys = make(map[string]struct{})
				addKeys(keys, &calls[j].kc)
			}
			continue
		case k != kind, k == stageAlone:
			return j
		case k == stageWrite && !addKeys(keys, &calls[j].kc):
			return j
		}
	}
	return j
}

// addKeys adds the keys c writes to keys and reports whether they were all
// new; if not, keys is left with some of them, which no longer matters.
func addKeys(keys map[string]struct{}, c *kv.Command) bool {
	add := func(k []byte) bool {
		if _, dup := keys[string(k)]; dup {
			return false
		}
		keys[string(k)] = struct{}{}
		return true
	}
	if c.Keys == nil {
		return add(c.Key)
	}
	for _, k := range c.Keys {
		if !add(k) {
			return false
		}
	}
	return true
}

// runStage runs the calls of one stage (see execute).
func (r *respServer) runStage(c *respConn, calls []respCall) {
	ctx := r.s.ctx
	var first *respCall
	n := 0
	for i := range calls {
		if calls[i].err == nil {
			if first == nil {
				first = &calls[i]
			}
			n++
		}
	}
	if first == nil {
		return
	}
	switch stageKind(first) {
	case stageAlone:
		// Runs when its reply is written, after the replies before it.
	case stageRead:
		var err error
		if !c.readonly {
			err = r.s.readIndex(ctx)
		}
		for i := range calls {
			if calls[i].err == nil {
				if err != nil {
					calls[i].err = err
				} else {
					calls[i].res, calls[i].err = r.s.read(ctx, &calls[i].kc, true)
				}
			}
		}
	case stageWrite:
		if n == 1 {
			first.res, first.err = r.s.write(ctx, &first.kc)
			return
		}
		var wg sync.WaitGroup
		for i := range calls {
			if calls[i].err == nil {
				wg.Go(func() { calls[i].res, calls[i].err = r.s.write(ctx, &calls[i].kc) })
			}
		}
		wg.Wait()
	}
}

// reply writes call's reply and records its metrics.
func (r *respServer) reply(c *respConn, call *respCall, start time.Time) {
	command := "unknown"
	if call.cmd != nil {
		command = call.cmd.name
	}
	kind := ""
	switch {
	case call.err != nil:
		kind = writeError(c.wr, call.err)
	case call.cmd.parse == nil:
		if err := call.cmd.run(r.s, c, call); err != nil {
			kind = writeError(c.wr, err)
		}
	case call.res.Err != nil:
		kind = errKindClient
		c.wr.WriteError(call.res.Err.Error())
	default:
		call.cmd.reply(r.s, c.wr, call)
	}
	r.s.metrics.observe("resp", command, start, kind)
}

// writeError writes err as a RESP error and returns its metrics kind.
func writeError(w *redcon.Writer, err error) string {
	var ue *UnavailableError
	var ke *kv.Error
	var re respError
	switch {
	case errors.As(err, &ue):
		w.WriteError("TRYAGAIN " + ue.Error())
		return errKindUnavailable
	case errors.As(err, &ke):
		w.WriteError(ke.Error())
		return errKindClient
	case errors.As(err, &re):
		w.WriteError(oneLine(string(re)))
		return errKindClient
	default:
		w.WriteError(oneLine("ERR internal error: " + err.Error()))
		return errKindInternal
	}
}

// respError is an error whose text is a complete Redis error reply
// ("ERR ...", "NOPROTO ...").
type respError string

func (e respError) Error() string { return string(e) }

// oneLine makes s safe inside a RESP simple string or error, which end at
// the first line break.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
