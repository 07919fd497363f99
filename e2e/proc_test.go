package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testenv"
)

// bin is the raftkv binary, built once by the first test that needs it,
// into binDir, which TestMain removes.
var (
	buildOnce sync.Once
	binDir    string
	bin       string
	buildErr  error
)

func TestMain(m *testing.M) {
	// go-redis logs each failed dial; the tests dial killed nodes on purpose.
	redis.SetLogger(quiet{})
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests start real processes; skipped with -short")
	}
	// Built here rather than in TestMain because the go command only sees
	// the files a test opens once m.Run has started (see touchSources).
	buildOnce.Do(func() {
		if buildErr = touchSources(); buildErr != nil {
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "raftkv-e2e-bin"); buildErr != nil {
			return
		}
		bin = filepath.Join(binDir, "raftkv")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/raftkv/raftkv/cmd/raftkv").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build raftkv: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// touchSources stats every Go source of the module. The go command caches
// test results keyed on the files a test opened; the binary is built in a
// subprocess it does not see, so without this a change to the binary's
// code would replay a stale cached pass.
func touchSources() error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	return filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum") {
			_, err = os.Stat(path)
		}
		return err
	})
}

// Shared test helpers, named as the tests here have always called them.
var (
	eventually = testenv.Eventually
	freePorts  = testenv.FreeAddrs
	freeBlocks = testenv.FreePortBlocks
)

const waitTimeout = testenv.WaitTimeout

// quiet discards go-redis' logs.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// proc is one raftkv process.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	http   string         // its --http-addr
	redis  string         // its --redis-addr, if any
	client *client.Client // talks to http
	out    *lines         // stdout and stderr so far

	done    chan struct{} // closed when the process has exited
	exitErr error         // set before done is closed
}

// lines records what a process writes, line by line. exec.Cmd's copying
// goroutine writes, tests read.
type lines struct {
	mu      sync.Mutex // guards partial and all
	partial []byte     // the start of a line not yet ended
	all     []string
}

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.all = append(l.all, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
}

// start runs the binary in dir with args and records its output.
func start(t *testing.T, name, dir, httpAddr string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, http: httpAddr, out: &lines{}, done: make(chan struct{})}
	if httpAddr != "" {
		var err error
		if p.client, err = client.New([]string{httpAddr}, client.WithTimeout(time.Second)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.client.Close)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", p.name, strings.Join(p.output(), "\n"))
		}
	})
	return p
}

func (p *proc) output() []string {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	return append([]string(nil), p.out.all...)
}

// records returns the JSON log records with the given message.
func (p *proc) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range p.output() {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to go.
func (p *proc) kill() {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		p.t.Fatalf("%s did not exit within %v", p.name, waitTimeout)
	}
	var ee *exec.ExitError
	if errors.As(p.exitErr, &ee) {
		return ee.ExitCode()
	}
	if p.exitErr != nil {
		p.t.Fatalf("%s: %v", p.name, p.exitErr)
	}
	return 0
}

// status fetches the process's GET /v1/status; ok is false while it does
// not answer.
func (p *proc) status() (st client.Status, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	answers, err := p.client.Status(ctx)
	if err != nil {
		return client.Status{}, false
	}
	return answers[0].Status, true
}

// agreedLeader waits until every given process answers and all name the
// same leader in the same term, exactly one of them being that leader.
func agreedLeader(t *testing.T, procs ...*proc) (leader *proc, term uint64) {
	t.Helper()
	eventually(t, "all nodes to agree on one leader", func() bool {
		leader, term = nil, 0
		var name string
		for _, p := range procs {
			st, ok := p.status()
			if !ok || st.Leader == "none" || (name != "" && (st.Leader != name || st.Term != term)) {
				return false
			}
			name, term = st.Leader, st.Term
			if st.Role == "leader" {
				if leader != nil || st.Name != st.Leader {
					return false
				}
				leader = p
			}
		}
		return leader != nil
	})
	return leader, term
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// runCLI runs the binary to completion with args and returns what it wrote
// to stdout and stderr and its exit code.
func runCLI(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("raftkv %q: %v", args, err)
	}
	return o.String(), e.String(), code
}
