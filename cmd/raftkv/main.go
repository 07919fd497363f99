// Command raftkv runs one node of a raftkv cluster.
//
// Two forms start a node:
//
//	raftkv serve --id n1 --data-dir DIR --peer-addr 127.0.0.1:7001 \
//	    --cluster n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003
//	raftkv 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002
//
// The second is the original teaching program's form: the address to listen
// on, then the peers' addresses. Every flag can also be set through an
// environment variable RAFTKV_<FLAG>, with dashes as underscores
// (RAFTKV_DATA_DIR). A restarted node needs only its data directory.
//
// This file only parses the command line and wires packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/server"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the node failed while running
	exitStartup = 2 // bad flags, an address in use, a data dir of another node
)

const usage = `usage:
  raftkv serve --id NAME --data-dir DIR --cluster NAME=HOST:PORT,... [flags]
  raftkv serve --data-dir DIR [flags]              restart a node
  raftkv [flags] LISTEN_ADDR [PEER_ADDR...]        the original form

Every flag can also be set as RAFTKV_<FLAG> (dashes as underscores).
Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// options are the parsed flags of both forms.
type options struct {
	dataDir, httpAddr     string
	logLevel, logFormat   string
	statusInterval        time.Duration
	tickInterval          time.Duration
	electionTicks         int
	heartbeatTicks        int
	snapshotEntries       uint64
	id, peerAddr, cluster string // serve only
}

// run runs raftkv with the given arguments until ctx is cancelled (a signal)
// or the node fails, and returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	cfg, o, err := parseArgs(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv: %s\n", oneLine(err))
		return exitStartup
	}
	logger, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "raftkv: %s\n", oneLine(err))
		return exitStartup
	}
	cfg.Logger = logger
	cfg.StateMachine = &counter{}

	var httpLn net.Listener
	if o.httpAddr != "" {
		// Listen before starting the node, so that a busy port is reported
		// before the node touches its data.
		if httpLn, err = net.Listen("tcp", o.httpAddr); err != nil {
			fmt.Fprintf(stderr, "raftkv: http address: %s\n", oneLine(err))
			return exitStartup
		}
	}
	n, err := node.Start(cfg)
	if err != nil {
		if httpLn != nil {
			httpLn.Close()
		}
		fmt.Fprintf(stderr, "raftkv: %s\n", oneLine(err))
		return exitStartup
	}
	stopHTTP := func(context.Context) {}
	if httpLn != nil {
		stopHTTP = serveHTTP(httpLn, server.NewHTTPHandler(n), logger)
	}

	code := exitOK
	ticker := time.NewTicker(o.statusInterval)
	defer ticker.Stop()
wait:
	for {
		select {
		case <-ticker.C:
			logger.LogAttrs(ctx, slog.LevelInfo, "status", n.Status().LogAttrs()...)
		case <-ctx.Done():
			logger.Info("stopping on signal")
			break wait
		case <-n.Done():
			// Stopped on its own: only a failure does that.
			code = exitFailed
			break wait
		}
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopHTTP(stopCtx)
	if err := n.Stop(stopCtx); err != nil {
		logger.Error("stop", "err", err)
		code = exitFailed
	}
	if code == exitOK {
		logger.Info("stopped cleanly")
	}
	return code
}

// serveHTTP serves h on ln until the returned function is called, which
// shuts the server down and waits for it.
func serveHTTP(ln net.Listener, h http.Handler, logger *slog.Logger) (stop func(context.Context)) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server", "err", err)
		}
	}()
	logger.Info("http listening", "addr", ln.Addr().String())
	return func(ctx context.Context) {
		srv.Shutdown(ctx)
		<-done
	}
}

// parseArgs turns the command line (and environment) into a node
// configuration; the error is a usage error.
func parseArgs(args []string, stderr io.Writer, getenv func(string) string) (node.Config, options, error) {
	var o options
	serve := len(args) > 0 && args[0] == "serve"
	if serve {
		args = args[1:]
	}
	fs := flag.NewFlagSet("raftkv", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by the caller
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for the node's log, snapshots and identity (original form: raftkv-data/<host>-<port>)")
	fs.StringVar(&o.httpAddr, "http-addr", "", "address for the HTTP API (/v1/status, /healthz); empty: none")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&o.statusInterval, "status-interval", 2*time.Second, "how often to log the status line")
	fs.DurationVar(&o.tickInterval, "tick-interval", node.DefaultTickInterval, "length of one raft tick")
	fs.IntVar(&o.electionTicks, "election-ticks", node.DefaultElectionTicks, "election timeout in ticks (randomized up to twice this)")
	fs.IntVar(&o.heartbeatTicks, "heartbeat-ticks", node.DefaultHeartbeatTicks, "leader heartbeat interval in ticks")
	fs.Uint64Var(&o.snapshotEntries, "snapshot-entries", node.DefaultSnapshotEntries, "snapshot and compact the log every this many applied entries")
	if serve {
		fs.StringVar(&o.id, "id", "", "this node's name, one of --cluster (new node only)")
		fs.StringVar(&o.peerAddr, "peer-addr", "", "address to listen on for peers (default: this node's --cluster address)")
		fs.StringVar(&o.cluster, "cluster", "", "initial cluster as NAME=HOST:PORT,... (new node only)")
	}
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, usage)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return node.Config{}, o, err
	}
	if err != nil {
		return node.Config{}, o, fmt.Errorf("%w (see raftkv -h)", err)
	}
	if err := applyEnv(fs, getenv); err != nil {
		return node.Config{}, o, err
	}
	if o.statusInterval <= 0 {
		return node.Config{}, o, fmt.Errorf("--status-interval must be positive, got %v", o.statusInterval)
	}
	var cfg node.Config
	if serve {
		if len(pos) > 0 {
			return node.Config{}, o, fmt.Errorf("serve takes no arguments, got %q (see raftkv -h)", pos)
		}
		cfg, err = serveConfig(&o)
	} else {
		cfg, err = originalConfig(&o, pos, stderr)
	}
	if err != nil {
		return node.Config{}, o, err
	}
	cfg.TickInterval = o.tickInterval
	cfg.ElectionTicks = o.electionTicks
	cfg.HeartbeatTicks = o.heartbeatTicks
	cfg.SnapshotEntries = o.snapshotEntries
	return cfg, o, nil
}

// parseInterleaved parses flags wherever they appear among the positional
// arguments (the flag package stops at the first one), so that
// "raftkv 127.0.0.1:7000 --http-addr :8080 127.0.0.1:7001" works.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// applyEnv sets every flag not given on the command line from its
// RAFTKV_<FLAG> environment variable, if set.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		name := "RAFTKV_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("invalid value %q for %s: %w", v, name, serr)
			}
		}
	})
	return err
}

// serveConfig builds the configuration of "raftkv serve": from --id and
// --cluster for a new node, or from the data directory for a restart.
func serveConfig(o *options) (node.Config, error) {
	if o.dataDir == "" {
		return node.Config{}, errors.New("--data-dir is required")
	}
	cfg := node.Config{DataDir: o.dataDir, PeerAddr: o.peerAddr}
	if o.cluster == "" && o.id == "" {
		m, err := node.LoadMembership(o.dataDir)
		if errors.Is(err, os.ErrNotExist) {
			return node.Config{}, fmt.Errorf("%s holds no node yet: a new node needs --id and --cluster", o.dataDir)
		}
		if err != nil {
			return node.Config{}, err
		}
		cfg.ID, cfg.ClusterID, cfg.Members = m.ID, m.ClusterID, m.Members
		return cfg, nil
	}
	if o.cluster == "" || o.id == "" {
		return node.Config{}, errors.New("--id and --cluster go together")
	}
	members, err := parseCluster(o.cluster)
	if err != nil {
		return node.Config{}, err
	}
	cfg.ID, cfg.Members = node.MemberID(o.id), members
	if !hasMember(members, cfg.ID) {
		return node.Config{}, fmt.Errorf("--id %q is not in --cluster", o.id)
	}
	return cfg, nil
}

// parseCluster parses NAME=HOST:PORT,...
func parseCluster(s string) ([]node.Member, error) {
	var members []node.Member
	for part := range strings.SplitSeq(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--cluster: %q is not NAME=HOST:PORT", part)
		}
		if err := checkAddr(addr); err != nil {
			return nil, fmt.Errorf("--cluster: member %s: %w", name, err)
		}
		m := node.NewMember(name, addr)
		if hasMember(members, m.ID) {
			return nil, fmt.Errorf("--cluster: %s is listed twice", name)
		}
		members = append(members, m)
	}
	return members, nil
}

// originalConfig builds the configuration of the original form: the first
// address is this node's, the others its peers'. Each member is named by its
// address, so the same command after a restart is the same node.
func originalConfig(o *options, addrs []string, stderr io.Writer) (node.Config, error) {
	if len(addrs) == 0 {
		return node.Config{}, errors.New("no listen address given (see raftkv -h)")
	}
	var members []node.Member
	for _, addr := range addrs {
		if err := checkAddr(addr); err != nil {
			return node.Config{}, err
		}
		m := node.NewMember(addr, addr)
		if hasMember(members, m.ID) {
			return node.Config{}, fmt.Errorf("address %s is listed twice", addr)
		}
		members = append(members, m)
	}
	if o.dataDir == "" {
		o.dataDir = filepath.Join("raftkv-data", strings.NewReplacer(":", "-", "[", "", "]", "").Replace(addrs[0]))
		fmt.Fprintf(stderr, "raftkv: node %s keeps its data in %s\n", addrs[0], o.dataDir)
	}
	return node.Config{ID: members[0].ID, DataDir: o.dataDir, Members: members}, nil
}

func hasMember(ms []node.Member, id uint64) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "0" {
		return fmt.Errorf("address %q: bad port", addr)
	}
	if host == "" {
		return fmt.Errorf("address %q: peers need a host to dial", addr)
	}
	return nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// oneLine keeps an error on one line of stderr (joined errors span several).
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
