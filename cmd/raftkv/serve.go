package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/server"
)

// stopTimeout bounds a clean stop: draining client requests and letting the
// node apply what it already committed. Past it the node stops at once,
// which loses nothing acknowledged either.
const stopTimeout = 10 * time.Second

// nodeFlags are the flags that tune a node; raftkv dev passes them on to
// each node it starts.
type nodeFlags struct {
	logLevel, logFormat string
	tickInterval        time.Duration
	electionTicks       int
	heartbeatTicks      int
	snapshotEntries     uint64
	catchUpEntries      int
	readMode            string
}

// register adds the flags to fs, the log level's default being logLevel.
func (f *nodeFlags) register(fs *flag.FlagSet, logLevel string) {
	fs.StringVar(&f.logLevel, "log-level", logLevel, "log level: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&f.tickInterval, "tick-interval", node.DefaultTickInterval, "length of one raft tick")
	fs.IntVar(&f.electionTicks, "election-ticks", node.DefaultElectionTicks, "election timeout in ticks (randomized up to twice this)")
	fs.IntVar(&f.heartbeatTicks, "heartbeat-ticks", node.DefaultHeartbeatTicks, "leader heartbeat interval in ticks")
	fs.Uint64Var(&f.snapshotEntries, "snapshot-entries", node.DefaultSnapshotEntries, "snapshot and compact the log every this many applied entries")
	fs.IntVar(&f.catchUpEntries, "catch-up-entries", node.DefaultCatchUpEntries, "entries the log keeps below a snapshot, so that a follower lagging by fewer catches up from the log rather than by a whole snapshot; 0: none")
	fs.StringVar(&f.readMode, "read-mode", "safe", "how the leader confirms linearizable reads: safe (a heartbeat round per batch of reads) or lease (no round; trusts that clocks on all members run at about the same rate; set it alike on every member)")
}

// leaseReads reports whether the read mode is lease rather than safe.
func (f *nodeFlags) leaseReads() (bool, error) {
	switch f.readMode {
	case "safe":
		return false, nil
	case "lease":
		return true, nil
	}
	return false, fmt.Errorf("--read-mode %q: want safe or lease", f.readMode)
}

// args returns the flags as command-line arguments.
func (f *nodeFlags) args() []string {
	return []string{
		"--log-level", f.logLevel,
		"--log-format", f.logFormat,
		"--tick-interval", f.tickInterval.String(),
		"--election-ticks", fmt.Sprint(f.electionTicks),
		"--heartbeat-ticks", fmt.Sprint(f.heartbeatTicks),
		"--snapshot-entries", fmt.Sprint(f.snapshotEntries),
		"--catch-up-entries", fmt.Sprint(f.catchUpEntries),
		"--read-mode", f.readMode,
	}
}

// options are the parsed flags of both forms that start a node.
type options struct {
	nodeFlags
	dataDir             string
	redisAddr, httpAddr string
	statusInterval      time.Duration
	id, peerAddr        string // serve only
	cluster             string // serve only
}

// runNode runs one node, in either form, until ctx is cancelled (a signal)
// or the node fails, and returns the exit code.
func runNode(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
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
	n, srv, err := startNode(cfg, o, logger)
	if err != nil {
		fmt.Fprintf(stderr, "raftkv: %s\n", oneLine(err))
		return exitStartup
	}

	code := exitOK
	var status <-chan time.Time
	if o.statusInterval > 0 {
		ticker := time.NewTicker(o.statusInterval)
		defer ticker.Stop()
		status = ticker.C
	}
wait:
	for {
		select {
		case <-status:
			logger.LogAttrs(ctx, slog.LevelInfo, "status", n.Status().LogAttrs()...)
		case <-ctx.Done():
			logger.Info("stopping on signal")
			handOff(n, electionTimeout(cfg), logger)
			break wait
		case <-n.Done():
			// Stopped on its own: only a failure does that.
			code = exitFailed
			break wait
		}
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if srv != nil {
		if err := srv.Shutdown(stopCtx); err != nil {
			logger.Warn("client requests still running were cut off", "err", err)
		}
	}
	if err := n.Stop(stopCtx); err != nil {
		logger.Error("stop", "err", err)
		code = exitFailed
	}
	if code == exitOK {
		logger.Info("stopped cleanly")
	}
	return code
}

// startNode starts the node with the kv store as its state machine, and the
// server for the client addresses given, if any.
func startNode(cfg node.Config, o options, logger *slog.Logger) (*node.Node, *server.Server, error) {
	sm := server.NewStateMachine(kv.New())
	cfg.StateMachine = sm
	// Listen before starting the node, so that a busy port is reported
	// before the node touches its data.
	redisLn, err := listen("redis", o.redisAddr)
	if err != nil {
		return nil, nil, err
	}
	httpLn, err := listen("http", o.httpAddr)
	if err != nil {
		closeAll(redisLn)
		return nil, nil, err
	}
	n, err := node.Start(cfg)
	if err != nil {
		closeAll(redisLn, httpLn)
		return nil, nil, err
	}
	if redisLn == nil && httpLn == nil {
		return n, nil, nil
	}
	srv, err := server.New(server.Config{
		RedisListener: redisLn, HTTPListener: httpLn,
		Node: n, StateMachine: sm, Logger: logger,
		// A proposal lost in a leader change is proposed again after
		// about the time a new leader takes to be elected.
		ProposalTimeout: electionTimeout(cfg),
	})
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		closeAll(redisLn, httpLn)
		n.Close()
		return nil, nil, err
	}
	return n, srv, nil
}

func electionTimeout(cfg node.Config) time.Duration {
	return time.Duration(cfg.ElectionTicks) * cfg.TickInterval
}

// handOff hands the leadership of a stopping leader to its most up-to-date
// recently active peer, so that the cluster does not wait an election
// timeout to notice it is gone. It gives up after wait (a transfer that
// has not completed within an election timeout has failed) and the node
// stops anyway.
func handOff(n *node.Node, wait time.Duration, logger *slog.Logger) {
	st := n.Status()
	if st.Role != raft.Leader {
		return
	}
	var to, match uint64
	for id, p := range st.Progress {
		if id == st.ID || !p.RecentActive {
			continue
		}
		if to == 0 || p.Match > match || (p.Match == match && id < to) {
			to, match = id, p.Match
		}
	}
	if to == 0 {
		logger.Info("no active peer to hand leadership to")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	if err := n.TransferLeadership(ctx, to); err != nil {
		logger.Info("leadership transfer did not complete; stopping anyway", "to", st.Name(to), "err", err)
		return
	}
	logger.Info("handed leadership over", "to", st.Name(to), "took", time.Since(start).Round(time.Millisecond))
}

// listen listens on addr for the named API; an empty addr means none.
func listen(api, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s address: %w", api, err)
	}
	return ln, nil
}

func closeAll(lns ...net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
}

// parseArgs turns the command line (and environment) of either form that
// starts a node into a node configuration; the error is a usage error.
func parseArgs(args []string, stderr io.Writer, getenv func(string) string) (node.Config, options, error) {
	var o options
	serve := len(args) > 0 && args[0] == "serve"
	name := "raftkv"
	if serve {
		args, name = args[1:], "raftkv serve"
	}
	fs := newFlagSet(name)
	o.register(fs, "info")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for the node's log, snapshots and identity (original form: raftkv-data/<host>-<port>)")
	fs.StringVar(&o.redisAddr, "redis-addr", "", "address for the Redis protocol (RESP) API; empty: none")
	fs.StringVar(&o.httpAddr, "http-addr", "", "address for the HTTP API, metrics and dashboard; empty: none")
	fs.DurationVar(&o.statusInterval, "status-interval", 2*time.Second, "how often to log the status line; 0: never")
	if serve {
		fs.StringVar(&o.id, "id", "", "this node's name, one of --cluster (new node only)")
		fs.StringVar(&o.peerAddr, "peer-addr", "", "address to listen on for peers (default: this node's --cluster address)")
		fs.StringVar(&o.cluster, "cluster", "", "initial cluster as NAME=HOST:PORT,... (new node only)")
	}
	pos, err := parseFlags(fs, args, stderr, getenv)
	if err != nil {
		return node.Config{}, o, err
	}
	if o.statusInterval < 0 {
		return node.Config{}, o, fmt.Errorf("--status-interval must not be negative, got %v", o.statusInterval)
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
	switch {
	case o.catchUpEntries < 0:
		return node.Config{}, o, fmt.Errorf("--catch-up-entries must not be negative, got %d", o.catchUpEntries)
	case o.catchUpEntries == 0:
		cfg.CatchUpEntries = -1 // the node's way to say none
	default:
		cfg.CatchUpEntries = o.catchUpEntries
	}
	if cfg.LeaseReads, err = o.leaseReads(); err != nil {
		return node.Config{}, o, err
	}
	return cfg, o, nil
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
