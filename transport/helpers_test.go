package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testenv"
	"github.com/raftkv/raftkv/raft/raftpb"
)

const testCluster = 7

// Shared test helpers, named as the tests here have always called them.
var (
	eventually = testenv.Eventually
	freeAddr   = testenv.FreeAddr
	testLogger = testenv.Logger
)

const waitFor = testenv.WaitTimeout

// checkNoLeaks fails the test if, once every later cleanup (such as
// closing transports) has run, more goroutines exist than now. Call it
// before creating anything that starts goroutines.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		deadline := time.Now().Add(waitFor)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf)
				return
			}
			<-tick.C
		}
	})
}

// recorder is a Handler that remembers everything it is told.
type recorder struct {
	mu          sync.Mutex
	msgs        []raftpb.Message
	unreachable map[uint64]int
	snapshots   map[uint64][]bool
}

func newRecorder() *recorder {
	return &recorder{unreachable: make(map[uint64]int), snapshots: make(map[uint64][]bool)}
}

func (r *recorder) Deliver(m raftpb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[id]++
}

func (r *recorder) ReportSnapshot(id uint64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snapshots[id] = append(r.snapshots[id], ok)
}

func (r *recorder) delivered() []raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// has reports whether a message of type typ from `from` with term `term`
// arrived; tests tag messages by term.
func (r *recorder) has(from uint64, typ raftpb.MessageType, term uint64) bool {
	return slices.ContainsFunc(r.delivered(), func(m raftpb.Message) bool {
		return m.From == from && m.Type == typ && m.Term == term
	})
}

func (r *recorder) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *recorder) snapshotReports(id uint64) []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.snapshots[id])
}

// node is a started transport with its recorder.
type node struct {
	*Transport
	rec *recorder
	id  uint64
}

func (n *node) addr() string { return n.Addr().String() }

// startNode starts a transport for id on a free loopback port; edit may
// adjust its configuration. It is closed when the test ends.
func startNode(t testing.TB, id uint64, edit func(*Config)) *node {
	t.Helper()
	cfg := Config{
		ID:          id,
		ClusterID:   testCluster,
		ListenAddr:  "127.0.0.1:0",
		DialTimeout: 5 * time.Second,
		Logger:      testLogger(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	rec := newRecorder()
	return &node{Transport: startTransport(t, cfg, rec), rec: rec, id: id}
}

// startTransport starts a transport that is closed when the test ends.
func startTransport(t testing.TB, cfg Config, h Handler) *Transport {
	t.Helper()
	tr, err := New(cfg, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := tr.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// connect makes every node a peer of every other.
func connect(nodes ...*node) {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.AddPeer(b.id, b.addr())
			}
		}
	}
}

// heartbeat is a small message tagged by term.
func heartbeat(from, to, term uint64) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgHeartbeat, From: from, To: to, Term: term, Commit: term}
}

// sendUntilDelivered resends m until the receiver has it: while a stream is
// being (re)established, messages may be dropped by design.
func sendUntilDelivered(t *testing.T, from, to *node, m raftpb.Message) {
	t.Helper()
	eventually(t, fmt.Sprintf("%v to be delivered", m), func() bool {
		if to.rec.has(m.From, m.Type, m.Term) {
			return true
		}
		from.Send([]raftpb.Message{m})
		return false
	})
}

// logCapture is a slog.Handler that keeps the records it is given.
type logCapture struct {
	mu      sync.Mutex
	records []slog.Record
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCapture) WithGroup(string) slog.Handler            { return c }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, r.Clone())
	return nil
}

// count returns how many records at level carry the attribute cause=cause.
func (c *logCapture) count(level slog.Level, cause string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.records {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "cause" && a.Value.String() == cause && r.Level == level {
				n++
			}
			return true
		})
	}
	return n
}

// testTLS returns a configuration for mutual TLS between loopback peers,
// with a self-signed certificate made for this test.
func testTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "raftkv transport test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}
