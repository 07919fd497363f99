package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
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
	join                string // serve only: a member's HTTP address
	// founders are the members a new founder founds the cluster with:
	// from --cluster, or the original form's addresses.
	founders []node.Member
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
	// Listen first, so that a busy port is reported before the node
	// touches its data.
	redisLn, httpLn, err := listenAPIs(o)
	if err != nil {
		fmt.Fprintf(stderr, "raftkv: %s\n", oneLine(err))
		return exitStartup
	}
	if err := prepare(ctx, &cfg, o, logger); err != nil {
		closeAll(redisLn, httpLn)
		if ctx.Err() != nil {
			logger.Info("stopped on signal before the node started", "err", err)
			return exitOK
		}
		fmt.Fprintf(stderr, "raftkv: %s\n", oneLine(err))
		return exitStartup
	}
	n, srv, err := startNode(cfg, logger, redisLn, httpLn)
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
			break wait
		case <-n.Done():
			// Stopped on its own: removed from the cluster, or failed.
			code = exitFailed
			if errors.Is(n.Err(), node.ErrRemoved) {
				logger.Info("removed from the cluster: stopping for good (its data directory is no longer needed)")
				code = exitOK
			}
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

// listenAPIs listens on the client addresses given, if any.
func listenAPIs(o options) (redisLn, httpLn net.Listener, err error) {
	if redisLn, err = listen("redis", o.redisAddr); err != nil {
		return nil, nil, err
	}
	if httpLn, err = listen("http", o.httpAddr); err != nil {
		closeAll(redisLn)
		return nil, nil, err
	}
	return redisLn, httpLn, nil
}

// startNode starts the node with the kv store as its state machine, and the
// server on the client listeners, if any. It closes the listeners if it
// fails.
func startNode(cfg node.Config, logger *slog.Logger, redisLn, httpLn net.Listener) (*node.Node, *server.Server, error) {
	sm := server.NewStateMachine(kv.New())
	cfg.StateMachine = sm
	if httpLn != nil {
		cfg.ClientURL = clientURL(httpLn.Addr(), cfg.PeerAddr)
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

// clientURL is the URL other members send clients to for this node's HTTP
// API at addr. A wildcard host (":8081") is not one to dial: the host of
// the peer address, which the others dial, stands in for it.
func clientURL(addr net.Addr, peerAddr string) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, _, err := net.SplitHostPort(peerAddr); err == nil && h != "" {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// prepare makes a new node's data directory ready for node.Start: a
// founder agrees on the cluster id with the other founders (node.Found,
// which waits for them all), a joining node asks the cluster to add it. A
// restarted node needs nothing; with --join, the cluster it names must be
// the data directory's.
func prepare(ctx context.Context, cfg *node.Config, o options, logger *slog.Logger) error {
	id, err := node.LoadIdentity(cfg.DataDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	exists := err == nil
	switch {
	case exists && id.ClusterID != 0 && o.join != "":
		return checkJoinTarget(ctx, o.join, id, logger)
	case exists && id.ClusterID != 0:
		return nil // a restart
	case o.join != "" && exists:
		return fmt.Errorf("%s began founding a cluster (%s): empty it to join another", cfg.DataDir, id)
	case o.join != "":
		return join(ctx, cfg, o.join, logger)
	}
	_, err = node.Found(ctx, node.FoundConfig{
		Name: cfg.Name, DataDir: cfg.DataDir, Members: o.founders, ListenAddr: cfg.PeerAddr, Logger: logger,
	})
	return err
}

// joinWait bounds asking to join: the cluster may be electing a leader.
const joinWait = time.Minute

// join asks the cluster at joinAddr to add this node, and fills cfg with
// what the answer says: the cluster's id and members.
func join(ctx context.Context, cfg *node.Config, joinAddr string, logger *slog.Logger) error {
	c, err := client.New([]string{joinAddr}, client.WithTimeout(joinWait))
	if err != nil {
		return fmt.Errorf("--join: %w", err)
	}
	defer c.Close()
	logger.Info("asking the cluster to add this node", "join", joinAddr, "name", cfg.Name, "peer_addr", cfg.PeerAddr)
	ans, err := c.Join(ctx, cfg.Name, cfg.PeerAddr, "")
	if err != nil {
		return fmt.Errorf("join the cluster at %s: %w", joinAddr, err)
	}
	cluster, err := strconv.ParseUint(ans.ClusterID, 16, 64)
	if err != nil || cluster == 0 {
		return fmt.Errorf("join the cluster at %s: bad cluster id %q in the answer", joinAddr, ans.ClusterID)
	}
	var members []node.Member
	for _, m := range ans.Members {
		id, err := strconv.ParseUint(m.ID, 16, 64)
		if err != nil {
			return fmt.Errorf("join the cluster at %s: member %q has a bad id %q", joinAddr, m.Name, m.ID)
		}
		members = append(members, node.Member{Name: m.Name, ID: id, Addr: m.Addr})
	}
	cfg.ClusterID, cfg.Members, cfg.Join = cluster, members, true
	logger.Info("added to the cluster as a learner; it becomes a voter once it has caught up", "cluster", ans.ClusterID, "leader", ans.Leader)
	return nil
}

// checkJoinTarget refuses a restart with --join naming a node of another
// cluster than the data directory's. If the node does not answer, the
// restart goes on: the directory says which cluster it is.
func checkJoinTarget(ctx context.Context, joinAddr string, id node.Identity, logger *slog.Logger) error {
	c, err := client.New([]string{joinAddr}, client.WithTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("--join: %w", err)
	}
	defer c.Close()
	m, err := c.Membership(ctx)
	if err != nil {
		logger.Warn("restarting without checking the cluster at --join", "join", joinAddr, "err", err)
		return nil
	}
	if want := fmt.Sprintf("%016x", id.ClusterID); m.ClusterID != want {
		return fmt.Errorf("%w: the data directory holds %s, but --join %s is a node of cluster %s", client.ErrWrongCluster, id, joinAddr, m.ClusterID)
	}
	return nil
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
		fs.StringVar(&o.id, "id", "", "this node's name: one of --cluster, or a new name with --join (new node only)")
		fs.StringVar(&o.peerAddr, "peer-addr", "", "address to listen on for peers, and, with --join, the one they dial (default: this node's --cluster address)")
		fs.StringVar(&o.cluster, "cluster", "", "the founders of a new cluster as NAME=HOST:PORT,... (new node only)")
		fs.StringVar(&o.join, "join", "", "HTTP address of any member of a running cluster to join (new node, with --id and --peer-addr)")
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
// --cluster for a founder, --id, --peer-addr and --join for a node that
// joins, or from the data directory for a restart.
func serveConfig(o *options) (node.Config, error) {
	if o.dataDir == "" {
		return node.Config{}, errors.New("--data-dir is required")
	}
	cfg := node.Config{DataDir: o.dataDir, Name: o.id, PeerAddr: o.peerAddr}
	id, err := node.LoadIdentity(o.dataDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return node.Config{}, err
	}
	exists := err == nil
	switch {
	case o.join != "" && o.cluster != "":
		return node.Config{}, errors.New("--join and --cluster exclude each other: a node founds a cluster or joins one")
	case o.join != "" && exists:
		return cfg, nil // a restart; the cluster at --join is checked
	case o.join != "":
		if o.id == "" || o.peerAddr == "" {
			return node.Config{}, errors.New("a node that joins needs --id and --peer-addr (the address its peers dial)")
		}
		if err := node.CheckName(o.id); err != nil {
			return node.Config{}, fmt.Errorf("--id: %w", err)
		}
		if err := checkAddr(o.peerAddr); err != nil {
			return node.Config{}, fmt.Errorf("--peer-addr: %w", err)
		}
		return cfg, nil
	case o.cluster == "" && o.id == "":
		if !exists {
			return node.Config{}, fmt.Errorf("%s holds no node yet: a new node needs --id and --cluster, or --id, --peer-addr and --join", o.dataDir)
		}
		cfg.Name = id.Name
		if id.ClusterID == 0 {
			o.founders = id.Members // founding was under way: go on
		}
		return cfg, nil
	case o.cluster == "" || o.id == "":
		return node.Config{}, errors.New("--id and --cluster go together")
	}
	members, err := parseCluster(o.cluster)
	if err != nil {
		return node.Config{}, err
	}
	if !hasMember(members, node.MemberID(o.id)) {
		return node.Config{}, fmt.Errorf("--id %q is not in --cluster", o.id)
	}
	o.founders = members
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
		if err := node.CheckName(name); err != nil {
			return nil, fmt.Errorf("--cluster: %w", err)
		}
		if err := checkAddr(addr); err != nil {
			return nil, fmt.Errorf("--cluster: member %s: %w", name, err)
		}
		m := node.NewMember(name, addr)
		if hasMember(members, m.ID) {
			return nil, fmt.Errorf("--cluster: %s is listed twice", name)
		}
		for _, o := range members {
			if o.Addr == addr {
				return nil, fmt.Errorf("--cluster: %s and %s have the same address %s", o.Name, name, addr)
			}
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
	o.founders = members
	return node.Config{Name: members[0].Name, DataDir: o.dataDir}, nil
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
