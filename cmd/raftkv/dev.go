package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/raftkv/raftkv/client"
)

// The dev cluster's defaults: node i (from 0) listens on each first port
// plus i.
const (
	defaultNodes     = 3
	defaultPeerPort  = 7001
	defaultRedisPort = 6381
	defaultHTTPPort  = 8081
	maxDevNodes      = 9
)

// devAddrs returns the addresses of n nodes on host, from port first on.
func devAddrs(host string, first, n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = net.JoinHostPort(host, strconv.Itoa(first+i))
	}
	return addrs
}

// devOptions are the flags of raftkv dev.
type devOptions struct {
	nodeFlags
	nodes                         int
	host                          string
	peerPort, redisPort, httpPort int
	dataDir                       string
	statusInterval                time.Duration
}

func parseDevArgs(args []string, stderr io.Writer, getenv func(string) string) (devOptions, error) {
	var o devOptions
	fs := newFlagSet("raftkv dev")
	// The nodes' info and warning logs (connections, elections, peers
	// unreachable while the others start or stop) would bury the status
	// lines that say the same in short.
	o.register(fs, "error")
	fs.IntVar(&o.nodes, "nodes", defaultNodes, fmt.Sprintf("how many nodes to start (1 to %d)", maxDevNodes))
	fs.StringVar(&o.host, "host", "127.0.0.1", "host the nodes listen on")
	fs.IntVar(&o.peerPort, "peer-port", defaultPeerPort, "peer port of the first node; the others' ports follow")
	fs.IntVar(&o.redisPort, "redis-port", defaultRedisPort, "Redis protocol port of the first node; the others' ports follow")
	fs.IntVar(&o.httpPort, "http-port", defaultHTTPPort, "HTTP port of the first node; the others' ports follow")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for the nodes' data, one subdirectory each (default: a new temporary directory, removed on exit)")
	fs.DurationVar(&o.statusInterval, "status-interval", 2*time.Second, "how often to print the cluster's status; 0: never")
	pos, err := parseFlags(fs, args, stderr, getenv)
	switch {
	case err != nil:
		return o, err
	case len(pos) > 0:
		return o, fmt.Errorf("dev takes no arguments, got %q (see raftkv dev -h)", pos)
	case o.nodes < 1 || o.nodes > maxDevNodes:
		return o, fmt.Errorf("--nodes %d: want 1 to %d", o.nodes, maxDevNodes)
	case o.statusInterval < 0:
		return o, fmt.Errorf("--status-interval must not be negative, got %v", o.statusInterval)
	}
	if _, err := o.leaseReads(); err != nil {
		return o, err
	}
	for _, p := range []struct {
		flag string
		port int
	}{{"--peer-port", o.peerPort}, {"--redis-port", o.redisPort}, {"--http-port", o.httpPort}} {
		if p.port < 1 || p.port+o.nodes-1 > 65535 {
			return o, fmt.Errorf("%s %d: want a port from 1 to %d", p.flag, p.port, 65535-o.nodes+1)
		}
	}
	return o, nil
}

// devNode is one node of the dev cluster: a child process running
// "raftkv serve".
type devNode struct {
	name, peer, redis, http string
	cmd                     *exec.Cmd
	out                     *prefixer
	done                    chan struct{} // closed once the process has exited; err is set then
	err                     error
}

func (d *devNode) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// runDev runs a local cluster of child processes of this same binary, each
// a "raftkv serve", until ctx is cancelled (Ctrl-C), then stops them all.
// The children's logs go to stderr, each line prefixed with the node's
// name; what to connect to and the cluster's status go to stdout.
//
// On Linux the children run in their own process group, so that Ctrl-C
// reaches only this process, which then stops them, and they get SIGTERM
// if this process dies without stopping them.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parseDevArgs(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv dev: %s\n", oneLine(err))
		return exitStartup
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "raftkv dev: find this program to start the nodes: %s\n", oneLine(err))
		return exitStartup
	}
	dir, temp := o.dataDir, o.dataDir == ""
	if temp {
		dir, err = os.MkdirTemp("", "raftkv-dev-")
	} else {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv dev: data directory: %s\n", oneLine(err))
		return exitStartup
	}
	if temp {
		fmt.Fprintf(stdout, "raftkv dev: data in %s (removed on exit; --data-dir keeps it)\n", dir)
	} else {
		fmt.Fprintf(stdout, "raftkv dev: data in %s\n", dir)
	}

	nodes := devNodes(o)
	// Each node's waiting goroutine sends it here once it has exited; the
	// buffer holds them all, so those goroutines never block.
	exits := make(chan *devNode, len(nodes))
	code := startDev(ctx, o, exe, dir, nodes, exits, stdout, stderr)
	if code == exitOK {
		code = watchDev(ctx, o, nodes, exits, stdout)
	}
	fmt.Fprintf(stdout, "raftkv dev: stopping %s\n", count(len(nodes)))
	if !stopDev(nodes, stdout) && code == exitOK {
		code = exitFailed
	}
	switch {
	case temp && code == exitFailed:
		fmt.Fprintf(stdout, "raftkv dev: data kept in %s, to see what failed\n", dir)
	case temp:
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(stderr, "raftkv dev: remove the data directory: %s\n", oneLine(err))
		}
	}
	if code == exitOK {
		fmt.Fprintln(stdout, "raftkv dev: stopped cleanly")
	}
	return code
}

// count says how many nodes n is, in words.
func count(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

// devNodes names the nodes and their addresses.
func devNodes(o devOptions) []*devNode {
	peers := devAddrs(o.host, o.peerPort, o.nodes)
	rediss := devAddrs(o.host, o.redisPort, o.nodes)
	https := devAddrs(o.host, o.httpPort, o.nodes)
	nodes := make([]*devNode, o.nodes)
	for i := range nodes {
		nodes[i] = &devNode{name: fmt.Sprintf("n%d", i+1), peer: peers[i], redis: rediss[i], http: https[i], done: make(chan struct{})}
	}
	return nodes
}

// startDev starts every node and waits until they agree on a leader, then
// prints how to connect. A node exiting first is a startup failure (its
// error is in its log); ctx ending is not: the cluster stops as usual.
func startDev(ctx context.Context, o devOptions, exe, dir string, nodes []*devNode, exits chan *devNode, stdout, stderr io.Writer) int {
	var cluster []string
	for _, d := range nodes {
		cluster = append(cluster, d.name+"="+d.peer)
	}
	env := childEnv(os.Environ())
	for _, d := range nodes {
		args := append([]string{"serve",
			"--id", d.name,
			"--data-dir", filepath.Join(dir, d.name),
			"--cluster", strings.Join(cluster, ","),
			"--redis-addr", d.redis,
			"--http-addr", d.http,
			"--status-interval", "0", // the cluster's status is printed here, in one line
		}, o.args()...)
		d.cmd = exec.Command(exe, args...)
		d.cmd.Env = env
		d.out = &prefixer{w: stderr, prefix: []byte(d.name + " | ")}
		d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
		d.cmd.SysProcAttr = devSysProcAttr()
		if err := d.cmd.Start(); err != nil {
			fmt.Fprintf(stderr, "raftkv dev: start %s: %s\n", d.name, oneLine(err))
			close(d.done)
			return exitStartup
		}
		go func() {
			d.err = d.cmd.Wait()
			d.out.flush()
			close(d.done)
			exits <- d
		}()
	}

	c := devClient(nodes)
	defer c.Close()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		all, _ := c.Status(ctx)
		if leader, term, ok := agreedLeader(all); ok {
			printConnect(stdout, o, exe, nodes, leader, term)
			return exitOK
		}
		select {
		case d := <-exits:
			fmt.Fprintf(stderr, "raftkv dev: %s exited while starting (%v)\n", d.name, d.err)
			return exitStartup
		case <-poll.C:
		case <-ctx.Done():
			return exitOK // Ctrl-C before the cluster was up: stop it as usual
		}
	}
}

// childEnv is this process's environment without RAFTKV_ variables: the
// nodes get their flags on the command line, and a variable meant for dev
// (RAFTKV_DATA_DIR) must not reach them.
func childEnv(environ []string) []string {
	var env []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "RAFTKV_") {
			env = append(env, kv)
		}
	}
	return env
}

func devClient(nodes []*devNode) *client.Client {
	var https []string
	for _, d := range nodes {
		https = append(https, d.http)
	}
	// The addresses are well-formed, so New cannot fail.
	c, _ := client.New(https, client.WithTimeout(time.Second))
	return c
}

// agreedLeader reports the leader and term every node names, once all
// answer, agree, and the leader itself says it leads.
func agreedLeader(all []client.NodeStatus) (leader string, term uint64, ok bool) {
	led := false
	for i, ns := range all {
		st := ns.Status
		if ns.Err != nil || st.Leader == "none" || (i > 0 && (st.Leader != leader || st.Term != term)) {
			return "", 0, false
		}
		leader, term = st.Leader, st.Term
		led = led || (st.Name == leader && st.Role == "leader")
	}
	return leader, term, led && len(all) > 0
}

// printConnect prints the nodes and how to talk to them; exe is this
// program.
func printConnect(w io.Writer, o devOptions, exe string, nodes []*devNode, leader string, term uint64) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "\nraftkv dev: %s up, %s leads term %d\n\n", count(len(nodes)), leader, term)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tPID\tPEER\tREDIS\tHTTP")
	var https []string
	for _, d := range nodes {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\thttp://%s/\n", d.name, d.cmd.Process.Pid, d.peer, d.redis, d.http)
		https = append(https, d.http)
	}
	tw.Flush()
	redisCLI := "redis-cli"
	if o.host != "127.0.0.1" {
		redisCLI += " -h " + o.host
	}
	cli := "raftkv"
	if strings.Contains(exe, "go-build") {
		cli = "go run ./cmd/raftkv" // started by go run, as the README's first command does
	}
	if o.nodes != defaultNodes || o.host != "127.0.0.1" || o.httpPort != defaultHTTPPort {
		// Not the endpoints the commands default to.
		cli = "RAFTKV_ENDPOINTS=" + strings.Join(https, ",") + " " + cli
	}
	last := nodes[len(nodes)-1]
	fmt.Fprintf(&b, `
Try, from another terminal:
  %[1]s -p %[2]d set hello world
  %[1]s -p %[3]d get hello
  curl -XPUT %[4]s/v1/kv/hello -d world
  curl %[5]s/v1/kv/hello
  %[6]s status
  %[6]s put greeting hi
Dashboard: http://%[4]s/
`, redisCLI, o.redisPort, o.redisPort+len(nodes)-1, nodes[0].http, last.http, cli)
	if len(nodes) >= 3 {
		b.WriteString("Kill the leader (kill -9 PID) to watch another take over.\n")
	}
	b.WriteString("Ctrl-C stops the cluster.\n\n")
	w.Write(b.Bytes())
}

// watchDev prints the cluster's status every interval until ctx ends, and
// notes nodes that exit meanwhile (someone killed one, to watch a
// failover). It returns once ctx ends.
func watchDev(ctx context.Context, o devOptions, nodes []*devNode, exits <-chan *devNode, stdout io.Writer) int {
	c := devClient(nodes)
	defer c.Close()
	var tick <-chan time.Time
	if o.statusInterval > 0 {
		t := time.NewTicker(o.statusInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case d := <-exits:
			fmt.Fprintf(stdout, "raftkv dev: %s exited (%v); the others go on\n", d.name, d.err)
		case <-tick:
			all, _ := c.Status(ctx)
			if ctx.Err() == nil {
				io.WriteString(stdout, statusLine(time.Now(), nodes, all))
			}
		}
	}
}

// statusLine is one line about every node; all are the nodes' answers, in
// order.
func statusLine(now time.Time, nodes []*devNode, all []client.NodeStatus) string {
	var b strings.Builder
	b.WriteString(now.Format("15:04:05"))
	for i, ns := range all {
		sep := "  "
		if i > 0 {
			sep = " | "
		}
		b.WriteString(sep)
		if ns.Err != nil {
			fmt.Fprintf(&b, "%s down", nodes[i].name)
			continue
		}
		st := ns.Status
		fmt.Fprintf(&b, "%s %s term %d commit %d applied %d", st.Name, st.Role, st.Term, st.Commit, st.Applied)
	}
	b.WriteByte('\n')
	return b.String()
}

// stopDev sends SIGTERM to every running node and waits for them to exit,
// killing those that take too long. It reports whether every node it
// stopped exited with status 0; nodes that had exited before (someone
// killed one) were reported then.
func stopDev(nodes []*devNode, stdout io.Writer) bool {
	var running []*devNode
	for _, d := range nodes {
		if d.cmd != nil && d.cmd.Process != nil && !d.exited() {
			d.cmd.Process.Signal(syscall.SIGTERM)
			running = append(running, d)
		}
	}
	// A node's own stop is bounded by stopTimeout, after at most an
	// election timeout handing leadership over.
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout+5*time.Second)
	defer cancel()
	clean := true
	for _, d := range running {
		select {
		case <-d.done:
		case <-ctx.Done():
			fmt.Fprintf(stdout, "raftkv dev: %s did not stop in time; killing it\n", d.name)
			d.cmd.Process.Kill()
			<-d.done
		}
		if d.err != nil {
			fmt.Fprintf(stdout, "raftkv dev: %s: %v\n", d.name, d.err)
			clean = false
		}
	}
	return clean
}

// prefixer writes what a node prints to w a whole line at a time, each
// line with one Write call (on an *os.File those do not interleave) and
// prefixed with the node's name. exec.Cmd's copying goroutine is its only
// writer.
type prefixer struct {
	w      io.Writer
	prefix []byte
	buf    []byte // the start of a line not yet ended
}

// maxLine bounds the buffer: a longer line is cut in lines of maxLine
// bytes.
const maxLine = 64 << 10

func (p *prefixer) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		var line []byte
		if i := bytes.IndexByte(p.buf, '\n'); i >= 0 && i < maxLine {
			line, p.buf = p.buf[:i+1], p.buf[i+1:]
		} else if len(p.buf) >= maxLine {
			line, p.buf = append(p.buf[:maxLine:maxLine], '\n'), p.buf[maxLine:]
		} else {
			return len(b), nil
		}
		p.w.Write(append(append([]byte(nil), p.prefix...), line...))
	}
}

// flush writes a last line without its newline, once the node has exited.
func (p *prefixer) flush() {
	if len(p.buf) > 0 {
		p.Write([]byte{'\n'})
	}
}
