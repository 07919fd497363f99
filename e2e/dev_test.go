package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// devCluster is a running "raftkv dev".
type devCluster struct {
	*proc
	dataDir string
	pids    []int
	redis   []int    // ports
	https   []string // addresses
}

var (
	dataDirLine = regexp.MustCompile(`^raftkv dev: data in (\S+)`)
	nodeRow     = regexp.MustCompile(`^\s+n\d+\s+(\d+)\s`)
	upLine      = regexp.MustCompile(`^raftkv dev: 3 nodes up, n\d leads term \d+$`)
	n3Killed    = regexp.MustCompile(`^raftkv dev: n3 exited \(signal: killed\); the others go on$`)
	statusLine  = regexp.MustCompile(`^\d\d:\d\d:\d\d  n1 \w+ term \d+ commit \d+ applied \d+ \| n2 `)
)

// startDev runs "raftkv dev" on free ports, with its temporary directory
// under tmp, and waits until it says the cluster is up.
func startDev(t *testing.T, tmp string) *devCluster {
	t.Helper()
	ports := freeBlocks(t, 3, 3)
	p := start(t, "dev", t.TempDir(), "", []string{"TMPDIR=" + tmp}, "dev",
		"--peer-port", fmt.Sprint(ports[0]), "--redis-port", fmt.Sprint(ports[1]), "--http-port", fmt.Sprint(ports[2]),
		"--status-interval", "200ms")
	eventually(t, "raftkv dev to say the cluster is up", func() bool {
		if p.exited() {
			t.Fatalf("raftkv dev exited while starting")
		}
		return p.has(upLine)
	})
	d := &devCluster{proc: p}
	for _, line := range p.output() {
		if m := dataDirLine.FindStringSubmatch(line); m != nil {
			d.dataDir = m[1]
		}
		if m := nodeRow.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[1])
			d.pids = append(d.pids, pid)
		}
	}
	for i := range 3 {
		d.redis = append(d.redis, ports[1]+i)
		d.https = append(d.https, fmt.Sprintf("127.0.0.1:%d", ports[2]+i))
	}
	if d.dataDir == "" || len(d.pids) != 3 {
		t.Fatalf("raftkv dev named data dir %q and pids %v; want a directory and three pids", d.dataDir, d.pids)
	}
	return d
}

func (p *proc) has(re *regexp.Regexp) bool {
	for _, line := range p.output() {
		if re.MatchString(line) {
			return true
		}
	}
	return false
}

// TestDev starts "raftkv dev" as the README's first command does, talks to
// it with the CLI, redis-cli and redis-benchmark, and stops it with Ctrl-C's
// SIGINT: exit 0, no node process left, the temporary data gone.
func TestDev(t *testing.T) {
	needBinary(t)
	tmp := t.TempDir()
	d := startDev(t, tmp)
	if !strings.HasPrefix(d.dataDir, tmp) {
		t.Errorf("data dir %s, want one under TMPDIR %s", d.dataDir, tmp)
	}
	endpoints := "--endpoints=" + strings.Join(d.https, ",")
	if out, stderr, code := runCLI(t, nil, "status", endpoints); code != 0 || strings.Count(out, "leader ") != 1 {
		t.Errorf("raftkv status: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	eventually(t, "status lines", func() bool {
		return d.has(statusLine)
	})

	t.Run("redis-cli", func(t *testing.T) {
		redisCLI := lookTool(t, "redis-cli")
		for i, port := range d.redis {
			key, value := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
			if out := runTool(t, redisCLI, "-p", fmt.Sprint(port), "set", key, value); out != "OK\n" {
				t.Errorf("redis-cli -p %d set %s %s: %q", port, key, value, out)
			}
			for _, from := range d.redis {
				if out := runTool(t, redisCLI, "-p", fmt.Sprint(from), "get", key); out != value+"\n" {
					t.Errorf("redis-cli -p %d get %s: %q, want %q", from, key, out, value)
				}
			}
		}
	})
	t.Run("redis-benchmark", func(t *testing.T) {
		bench := lookTool(t, "redis-benchmark")
		// Against a node that may be a follower: it forwards.
		out := runTool(t, bench, "-p", fmt.Sprint(d.redis[0]), "-t", "set,get", "-n", "2000", "-c", "16", "-q")
		if regexp.MustCompile(`(?i)\berr(or)?\b`).MatchString(out) || !strings.Contains(out, "SET: ") || !strings.Contains(out, "GET: ") {
			t.Errorf("redis-benchmark output %q, want SET and GET results and no error", out)
		}
		for _, line := range strings.Split(out, "\n") {
			if i := strings.LastIndex(line, "\r"); i >= 0 {
				line = line[i+1:] // the progress line it overwrote
			}
			if line != "" {
				t.Log(strings.TrimSpace(line))
			}
		}
	})

	// A node killed, as the hints suggest, is reported and the others go
	// on; raftkv dev still stops cleanly.
	if err := syscall.Kill(d.pids[2], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "raftkv dev to report n3 gone", func() bool { return d.has(n3Killed) })

	d.cmd.Process.Signal(syscall.SIGINT)
	if code := d.wait(); code != 0 {
		t.Fatalf("raftkv dev exited with %d after SIGINT, want 0", code)
	}
	if !d.has(regexp.MustCompile(`^raftkv dev: stopped cleanly$`)) {
		t.Error("raftkv dev did not say it stopped cleanly")
	}
	for _, pid := range d.pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node process %d is still there after raftkv dev exited (kill -0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(d.dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary data dir %s: %v, want it removed", d.dataDir, err)
	}
}

// TestDevStartupFailure: a node that cannot start (its port is taken)
// stops the whole dev cluster with exit code 2 and its reason.
func TestDevStartupFailure(t *testing.T) {
	needBinary(t)
	ports := freeBlocks(t, 3, 3)
	busy := ports[1] + 2 // the third node's RESP port
	ln := listenOn(t, busy)
	defer ln.Close()
	p := start(t, "dev", t.TempDir(), "", []string{"TMPDIR=" + t.TempDir()}, "dev",
		"--peer-port", fmt.Sprint(ports[0]), "--redis-port", fmt.Sprint(ports[1]), "--http-port", fmt.Sprint(ports[2]))
	if code := p.wait(); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !p.has(regexp.MustCompile(`^n3 \| raftkv: redis address: .*in use`)) || !p.has(regexp.MustCompile(`^raftkv dev: n3 exited while starting`)) {
		t.Errorf("output does not say n3 could not listen on its redis port")
	}
}

// lookTool finds a program or skips the test.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (Debian: apt-get install redis-tools; .ci/run does): %v", name, err)
	}
	return path
}

// runTool runs a program to completion and returns its output; failing to
// run or a non-zero exit fails the test.
func runTool(t *testing.T, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", path, args, err, out)
	}
	return string(out)
}

func listenOn(t *testing.T, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
