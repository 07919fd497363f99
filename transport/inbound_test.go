package transport

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// fakePeer is the id a hand-driven client claims; the node under test
// knows it as a peer (at an address where nothing listens).
const fakePeer = 9

// rawClient dials addr and, unless hs is nil, sends it as the handshake.
func rawClient(t *testing.T, addr string, hs []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	if hs != nil {
		if _, err := c.Write(hs); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func goodHandshake() handshake {
	return handshake{version: protocolVersion, kind: kindMessages, clusterID: testCluster, from: fakePeer, to: 1}
}

// expectAnswer reads the node's answer and checks its status.
func expectAnswer(t *testing.T, c net.Conn, want status) {
	t.Helper()
	var b [answerSize]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("read answer: %v", err)
	}
	got, err := parseAnswer(b[:])
	if err != nil || got != want {
		t.Fatalf("answer: got %d, %v; want %d", got, err, want)
	}
}

// expectClosed waits for the node to close c (a timeout means it did not).
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed by the node: %v", err)
	}
}

func frame(t testing.TB, m raftpb.Message) []byte {
	t.Helper()
	b, err := appendFrame(nil, &m, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInboundRefusals(t *testing.T) {
	checkNoLeaks(t)
	logs := &logCapture{}
	srv := startNode(t, 1, func(c *Config) {
		c.MaxFrameSize = 4 << 10
		c.DialTimeout = 200 * time.Millisecond // also bounds a silent client's handshake
		c.Logger = slog.New(logs)
		c.Peers = map[uint64]string{fakePeer: "127.0.0.1:1"}
	})
	good := startNode(t, 2, nil)
	connect(srv, good)

	withHandshake := func(edit func(*handshake)) []byte {
		h := goodHandshake()
		edit(&h)
		return h.appendTo(nil)
	}
	refused := map[string]struct {
		hs   []byte
		want status
	}{
		"wrong cluster":  {withHandshake(func(h *handshake) { h.clusterID++ }), statusWrongCluster},
		"unknown sender": {withHandshake(func(h *handshake) { h.from = 42 }), statusUnknownSender},
		"sender is self": {withHandshake(func(h *handshake) { h.from = 1 }), statusUnknownSender},
		"wrong receiver": {withHandshake(func(h *handshake) { h.to = 3 }), statusWrongReceiver},
		"newer version":  {withHandshake(func(h *handshake) { h.version++ }), statusBadVersion},
		"unknown kind":   {withHandshake(func(h *handshake) { h.kind = 0 }), statusBadKind},
		// This node has no Snapshots to store them in.
		"snapshot stream": {withHandshake(func(h *handshake) { h.kind = kindSnapshot }), statusBadKind},
	}
	// Messages in bad frames carry term 999, which must never be delivered.
	bad := func(edit func(*raftpb.Message)) []byte {
		m := heartbeat(fakePeer, 1, 999)
		edit(&m)
		return frame(t, m)
	}
	body := frame(t, heartbeat(fakePeer, 1, 999))[frameHeaderSize:]
	broken := map[string][]byte{
		"oversize length": frameHeader(4<<10 + 1),
		"huge length":     frameHeader(1<<32 - 1),
		"empty frame":     frameHeader(0),
		"garbage body":    append(frameHeader(5), "junk!"...),
		"wrong addressee": bad(func(m *raftpb.Message) { m.To = 2 }),
		"forged sender":   bad(func(m *raftpb.Message) { m.From = 2 }),
		"local-only type": bad(func(m *raftpb.Message) { m.Type = raftpb.MsgUnreachable }),
		"inline snapshot": bad(func(m *raftpb.Message) {
			m.Type, m.Snapshot = raftpb.MsgSnap, &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 5, Term: 1}, Data: []byte("x")}
		}),
		"truncated message": append(frameHeader(uint32(len(body)-2)), body[:len(body)-2]...),
	}
	term := uint64(0)
	stillServing := func(t *testing.T) {
		t.Helper()
		term++
		sendUntilDelivered(t, good, srv, heartbeat(2, 1, term))
	}

	for name, tc := range refused {
		t.Run(name, func(t *testing.T) {
			c := rawClient(t, srv.addr(), tc.hs)
			expectAnswer(t, c, tc.want)
			expectClosed(t, c)
			stillServing(t)
		})
	}
	t.Run("garbage instead of a handshake", func(t *testing.T) {
		c := rawClient(t, srv.addr(), []byte("GET / HTTP/1.1\r\nHost: raftkv\r\n\r\n"))
		expectClosed(t, c)
		stillServing(t)
	})
	t.Run("silent client", func(t *testing.T) {
		expectClosed(t, rawClient(t, srv.addr(), []byte("RKVT")))
		stillServing(t)
	})
	for name, b := range broken {
		t.Run(name, func(t *testing.T) {
			c := rawClient(t, srv.addr(), goodHandshake().appendTo(nil))
			expectAnswer(t, c, statusOK)
			// A valid message first, to show the stream worked until the bad frame.
			term++
			ok := heartbeat(fakePeer, 1, 1000+term)
			if _, err := c.Write(append(frame(t, ok), b...)); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
			if !srv.rec.has(fakePeer, raftpb.MsgHeartbeat, ok.Term) {
				t.Error("the valid message before the bad frame was not delivered")
			}
			stillServing(t)
		})
	}
	for _, m := range srv.rec.delivered() {
		if m.Term == 999 {
			t.Errorf("a refused message was delivered: %v", m)
		}
	}

	// Each cause is logged once at warning level, however often it recurs.
	for range 3 {
		c := rawClient(t, srv.addr(), withHandshake(func(h *handshake) { h.clusterID++ }))
		expectAnswer(t, c, statusWrongCluster)
		expectClosed(t, c)
	}
	stillServing(t)
	if n := logs.count(slog.LevelWarn, errWrongCluster.Error()); n != 1 {
		t.Errorf("wrong cluster logged %d times at warning level, want 1", n)
	}
	if n := logs.count(slog.LevelDebug, errWrongCluster.Error()); n != 3 {
		t.Errorf("wrong cluster repeats logged %d times at debug level, want 3", n)
	}
}

// A peer that reconnects replaces its earlier stream rather than piling up
// connections.
func TestInboundStreamReplaced(t *testing.T) {
	checkNoLeaks(t)
	srv := startNode(t, 1, func(c *Config) { c.Peers = map[uint64]string{fakePeer: "127.0.0.1:1"} })
	first := rawClient(t, srv.addr(), goodHandshake().appendTo(nil))
	expectAnswer(t, first, statusOK)
	second := rawClient(t, srv.addr(), goodHandshake().appendTo(nil))
	expectAnswer(t, second, statusOK)
	expectClosed(t, first)
	if _, err := second.Write(frame(t, heartbeat(fakePeer, 1, 5))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery on the new stream", func() bool { return srv.rec.has(fakePeer, raftpb.MsgHeartbeat, 5) })
}
