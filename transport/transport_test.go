package transport

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func TestThreeNodesExchange(t *testing.T) {
	checkNoLeaks(t)
	nodes := []*node{startNode(t, 1, nil), startNode(t, 2, nil), startNode(t, 3, nil)}
	connect(nodes...)
	for _, from := range nodes {
		for _, to := range nodes {
			if from != to {
				sendUntilDelivered(t, from, to, heartbeat(from.id, to.id, 10*from.id+to.id))
			}
		}
	}
	for _, n := range nodes {
		for _, m := range n.rec.delivered() {
			if m.To != n.id || m.Term != 10*m.From+m.To {
				t.Errorf("node %d got %v, which was not sent to it", n.id, m)
			}
		}
	}
}

func TestStreamKeepsOrderAndContent(t *testing.T) {
	checkNoLeaks(t)
	a := startNode(t, 1, func(c *Config) { c.QueueSize = 4096 })
	b := startNode(t, 2, nil)
	connect(a, b)
	sendUntilDelivered(t, a, b, heartbeat(1, 2, 1))

	const n = 2000
	msgs := make([]raftpb.Message, n)
	for i := range msgs {
		msgs[i] = raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 2, Index: uint64(i),
			Entries: []raftpb.Entry{{Term: 2, Index: uint64(i + 1), Data: []byte(strings.Repeat("x", i%300))}}}
	}
	a.Send(msgs)
	appends := func() []raftpb.Message {
		var apps []raftpb.Message
		for _, m := range b.rec.delivered() {
			if m.Type == raftpb.MsgApp {
				apps = append(apps, m)
			}
		}
		return apps
	}
	eventually(t, "all appends", func() bool { return len(appends()) == n })
	for i, m := range appends() {
		if m.Index != uint64(i) || len(m.Entries) != 1 || len(m.Entries[0].Data) != i%300 {
			t.Fatalf("message %d: got %v with %d entries, want index %d with %d data bytes", i, m, len(m.Entries), i, i%300)
		}
	}
	eventually(t, "the counters to agree", func() bool {
		sent, recv := a.Stats()[2], b.Stats()[1]
		return sent.Connected && sent.Sent == recv.Received && recv.Received == uint64(len(b.rec.delivered()))
	})
}

func TestUnreachablePeerReconnects(t *testing.T) {
	checkNoLeaks(t)
	addr := freeAddr(t)
	a := startNode(t, 1, func(c *Config) { c.Peers = map[uint64]string{2: addr} })
	a.Send([]raftpb.Message{heartbeat(1, 2, 1)})
	eventually(t, "peer 2 reported unreachable", func() bool { return a.rec.unreachableCount(2) > 0 })
	if s := a.Stats()[2]; s.Connected {
		t.Fatalf("stats say connected to a peer that is down: %+v", s)
	}

	b := startNode(t, 2, func(c *Config) { c.ListenAddr = addr; c.Peers = map[uint64]string{1: a.addr()} })
	sendUntilDelivered(t, a, b, heartbeat(1, 2, 2))
	sendUntilDelivered(t, b, a, heartbeat(2, 1, 2))

	// The peer restarts: the stream breaks, is reported, and comes back.
	before := a.rec.unreachableCount(2)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the broken stream to be reported", func() bool { return a.rec.unreachableCount(2) > before })
	b2 := startNode(t, 2, func(c *Config) { c.ListenAddr = addr; c.Peers = map[uint64]string{1: a.addr()} })
	sendUntilDelivered(t, a, b2, heartbeat(1, 2, 3))
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	checkNoLeaks(t)
	// Peer 2 accepts connections but never answers the handshake, so the
	// writer for 2 stays busy and its queue fills.
	stuck := listenStuck(t)
	c := startNode(t, 3, nil)
	a := startNode(t, 1, func(cfg *Config) {
		cfg.QueueSize = 4
		cfg.DialTimeout = time.Minute
		cfg.Peers = map[uint64]string{2: stuck.Addr().String(), 3: c.addr()}
	})
	c.AddPeer(1, a.addr())

	const sent = 10
	msgs := make([]raftpb.Message, sent)
	for i := range msgs {
		msgs[i] = heartbeat(1, 2, uint64(i+1))
	}
	a.Send(msgs)
	if got, want := a.Stats()[2].Dropped, uint64(sent-4); got != want {
		t.Errorf("dropped: got %d, want %d", got, want)
	}
	eventually(t, "peer 2 reported unreachable", func() bool { return a.rec.unreachableCount(2) > 0 })
	// The stuck peer holds up nobody else.
	sendUntilDelivered(t, a, c, heartbeat(1, 3, 1))
}

// listenStuck accepts connections and never reads or writes them.
func listenStuck(t *testing.T) net.Listener {
	return listenFake(t, func(net.Conn) {})
}

// listenFake runs greet on each accepted connection and then leaves it
// open, idle, until the test ends.
func listenFake(t *testing.T, greet func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			greet(c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln
}

func TestSlowPeerTimesOutWithoutBlockingOthers(t *testing.T) {
	checkNoLeaks(t)
	// Peer 2 completes the handshake and then never reads.
	ln := listenFake(t, func(c net.Conn) {
		var hs [handshakeSize]byte
		if _, err := io.ReadFull(c, hs[:]); err == nil {
			_, _ = c.Write(appendAnswer(nil, statusOK))
		}
	})
	c := startNode(t, 3, nil)
	a := startNode(t, 1, func(cfg *Config) {
		cfg.QueueSize = 64
		cfg.WriteTimeout = 100 * time.Millisecond
		cfg.Peers = map[uint64]string{2: ln.Addr().String(), 3: c.addr()}
	})
	c.AddPeer(1, a.addr())

	big := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: make([]byte, 64<<10)}}}
	eventually(t, "the write to the slow peer to time out", func() bool {
		a.Send([]raftpb.Message{big, big, big, big})
		return a.rec.unreachableCount(2) > 0 && a.Stats()[2].Dropped > 0
	})
	sendUntilDelivered(t, a, c, heartbeat(1, 3, 1))
}

func TestOversizeDropped(t *testing.T) {
	checkNoLeaks(t)
	a := startNode(t, 1, func(c *Config) { c.MaxFrameSize = 64 << 10 })
	b := startNode(t, 2, nil)
	connect(a, b)
	sendUntilDelivered(t, a, b, heartbeat(1, 2, 1))
	tooBig := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 2, Entries: []raftpb.Entry{{Data: make([]byte, 65<<10)}}}
	before := a.Stats()[2].Dropped
	a.Send([]raftpb.Message{tooBig})
	eventually(t, "the oversize message dropped", func() bool { return a.Stats()[2].Dropped == before+1 })
	// The stream survives the refusal.
	sendUntilDelivered(t, a, b, heartbeat(1, 2, 3))
	if b.rec.has(1, raftpb.MsgApp, 2) {
		t.Fatal("the oversize message was delivered")
	}
}

func TestRemoveAndUpdatePeer(t *testing.T) {
	checkNoLeaks(t)
	a := startNode(t, 1, nil)
	b := startNode(t, 2, nil)
	connect(a, b)
	sendUntilDelivered(t, a, b, heartbeat(1, 2, 1))
	sendUntilDelivered(t, b, a, heartbeat(2, 1, 1))

	// Once b forgets a, a's stream is refused and its messages dropped.
	b.RemovePeer(1)
	if _, ok := b.Stats()[1]; ok {
		t.Fatal("removed peer still in Stats")
	}
	eventually(t, "a to see its stream refused", func() bool {
		a.Send([]raftpb.Message{heartbeat(1, 2, 2)})
		return a.rec.unreachableCount(2) > 0 && !a.Stats()[2].Connected
	})
	if b.rec.has(1, raftpb.MsgHeartbeat, 2) {
		t.Fatal("a removed peer's message was delivered")
	}
	b.Send([]raftpb.Message{heartbeat(2, 1, 3)})
	eventually(t, "a send to a removed peer reported", func() bool { return b.rec.unreachableCount(1) > 0 })

	// Node 2 moves to a new address: a follows once told.
	b2 := startNode(t, 2, func(c *Config) { c.Peers = map[uint64]string{1: a.addr()} })
	a.UpdatePeer(2, b2.addr())
	sendUntilDelivered(t, a, b2, heartbeat(1, 2, 4))
	if got := a.Stats()[2].Addr; got != b2.addr() {
		t.Errorf("address after update: got %s, want %s", got, b2.addr())
	}
	a.AddPeer(2, b.addr()) // AddPeer of a known id updates it
	b.AddPeer(1, a.addr())
	sendUntilDelivered(t, a, b, heartbeat(1, 2, 5))
}

func TestTLS(t *testing.T) {
	checkNoLeaks(t)
	cfg := testTLS(t)
	withTLS := func(c *Config) { c.TLS = cfg }
	a, b := startNode(t, 1, withTLS), startNode(t, 2, withTLS)
	connect(a, b)
	sendUntilDelivered(t, a, b, heartbeat(1, 2, 1))
	sendUntilDelivered(t, b, a, heartbeat(2, 1, 1))

	// A plaintext node cannot get in, and the TLS nodes carry on.
	plain := startNode(t, 3, func(c *Config) { c.Peers = map[uint64]string{1: a.addr()} })
	a.AddPeer(3, plain.addr())
	plain.Send([]raftpb.Message{heartbeat(3, 1, 1)})
	eventually(t, "the plaintext node to give up", func() bool { return plain.rec.unreachableCount(1) > 0 })
	sendUntilDelivered(t, b, a, heartbeat(2, 1, 2))
	if a.rec.has(3, raftpb.MsgHeartbeat, 1) {
		t.Fatal("a plaintext message got through to a TLS node")
	}
}

func TestCloseIsIdempotentAndLeaksNothing(t *testing.T) {
	checkNoLeaks(t)
	stuck := listenStuck(t)
	nodes := []*node{startNode(t, 1, nil), startNode(t, 2, nil), startNode(t, 3, nil)}
	connect(nodes...)
	nodes[0].AddPeer(4, stuck.Addr().String()) // a writer blocked in a handshake
	nodes[0].AddPeer(5, freeAddr(t))           // a writer in backoff
	for _, n := range nodes[1:] {
		sendUntilDelivered(t, nodes[0], n, heartbeat(1, n.id, 1))
		sendUntilDelivered(t, n, nodes[0], heartbeat(n.id, 1, 1))
	}
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatalf("first Close: %v", err)
		}
		if err := n.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	if err := nodes[0].Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: got %v, want ErrClosed", err)
	}
	nodes[0].Send([]raftpb.Message{heartbeat(1, 2, 9)}) // must not panic or block
	nodes[0].AddPeer(6, "127.0.0.1:1")                  // must not start anything
}

func TestCloseBeforeStart(t *testing.T) {
	checkNoLeaks(t)
	tr, err := New(Config{ID: 1, ClusterID: 1, ListenAddr: "127.0.0.1:0", Peers: map[uint64]string{2: "127.0.0.1:1"}}, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	tr.Send([]raftpb.Message{heartbeat(1, 2, 1)})
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if tr.Addr() != nil {
		t.Errorf("Addr of a transport never started: got %v, want nil", tr.Addr())
	}
}

func TestStartErrors(t *testing.T) {
	checkNoLeaks(t)
	a := startNode(t, 1, nil)
	if err := a.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	tr, err := New(Config{ID: 2, ClusterID: 1, ListenAddr: a.addr()}, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	err = tr.Start()
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), a.addr()) {
		t.Fatalf("Start on a used address: got %v, want EADDRINUSE naming %s", err, a.addr())
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{ID: 1, ClusterID: 1, ListenAddr: ":0", Peers: map[uint64]string{1: ":7000", 2: "h:7001"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"zero id":           func(c *Config) { c.ID = 0 },
		"zero cluster":      func(c *Config) { c.ClusterID = 0 },
		"no listen address": func(c *Config) { c.ListenAddr = "" },
		"bad listen port":   func(c *Config) { c.ListenAddr = "h:99999" },
		"peer id 0":         func(c *Config) { c.Peers = map[uint64]string{0: "h:1"} },
		"peer without port": func(c *Config) { c.Peers = map[uint64]string{2: "h"} },
		"tiny frames":       func(c *Config) { c.MaxFrameSize = 10 },
		"huge frames":       func(c *Config) { c.MaxFrameSize = 1 << 31 },
		"negative queue":    func(c *Config) { c.QueueSize = -1 },
		"negative dial":     func(c *Config) { c.DialTimeout = -1 },
		"negative write":    func(c *Config) { c.WriteTimeout = -1 },
		"TLS without cert":  func(c *Config) { c.TLS = &tls.Config{} },
	} {
		t.Run(name, func(t *testing.T) {
			c := good
			edit(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("got nil, want an error")
			}
			if _, err := New(c, newRecorder()); err == nil {
				t.Fatal("New accepted the config")
			}
		})
	}
	if _, err := New(good, nil); err == nil {
		t.Error("New accepted a nil Handler")
	}
}

func TestSendDropsUnsendable(t *testing.T) {
	checkNoLeaks(t)
	a := startNode(t, 1, nil)
	a.Send([]raftpb.Message{
		{Type: raftpb.MsgUnreachable, From: 1, To: 1},
		heartbeat(1, 1, 1), // to self
		heartbeat(1, 0, 1), // to nobody
		heartbeat(1, 9, 1), // to an unknown peer
	})
	eventually(t, "the unknown peer reported", func() bool { return a.rec.unreachableCount(9) == 1 })
	if n := a.rec.unreachableCount(1) + a.rec.unreachableCount(0); n != 0 {
		t.Errorf("unsendable messages reported as unreachable peers: %d", n)
	}
}

// Close while another goroutine keeps sending and reshaping the peer set:
// nothing may panic, race, block or leak.
func TestCloseDuringTraffic(t *testing.T) {
	checkNoLeaks(t)
	a, b := startNode(t, 1, nil), startNode(t, 2, nil)
	connect(a, b)
	sendUntilDelivered(t, a, b, heartbeat(1, 2, 1))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		entry := []raftpb.Entry{{Data: make([]byte, 1<<10)}}
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a.Send([]raftpb.Message{{Type: raftpb.MsgApp, From: 1, To: 2, Index: i, Entries: entry}})
			b.Send([]raftpb.Message{heartbeat(2, 1, i)})
			switch i % 64 {
			case 0:
				a.RemovePeer(3)
			case 1:
				a.AddPeer(3, "127.0.0.1:1")
			case 2:
				a.UpdatePeer(3, "127.0.0.1:2")
			case 3:
				_ = a.Stats()
			}
		}
	}()
	eventually(t, "traffic to flow", func() bool { return len(b.rec.delivered()) > 100 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
}
