package transport

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// memSnapshots is a Snapshots in memory. Open serves the snapshots put in
// files; what arrives is committed to received. Hooks let tests hold or
// break either side.
type memSnapshots struct {
	mu       sync.Mutex // guards the fields below
	files    map[[2]uint64][]byte
	received map[[2]uint64][]byte
	aborted  int
	sinks    int // sinks handed out
	// gate, if set, is received from before each read of an opened
	// snapshot past its first chunk; the test closes it or feeds it.
	gate chan struct{}
	// failRead, if set, makes reads fail once this many bytes were read.
	failRead int64
	// failWrite makes every sink's Write fail.
	failWrite bool
}

func newMemSnapshots() *memSnapshots {
	return &memSnapshots{files: make(map[[2]uint64][]byte), received: make(map[[2]uint64][]byte)}
}

func (s *memSnapshots) put(index, term uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[[2]uint64{index, term}] = data
}

func (s *memSnapshots) got(index, term uint64) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.received[[2]uint64{index, term}]
	return b, ok
}

func (s *memSnapshots) counts() (sinks, aborted, received int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sinks, s.aborted, len(s.received)
}

func (s *memSnapshots) Open(index, term uint64) (io.ReadCloser, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.files[[2]uint64{index, term}]
	if !ok {
		return nil, 0, fmt.Errorf("no snapshot %d/%d", index, term)
	}
	return &memReader{s: s, r: bytes.NewReader(b), gate: s.gate, failAt: s.failRead}, int64(len(b)), nil
}

type memReader struct {
	s      *memSnapshots
	r      *bytes.Reader
	gate   chan struct{}
	failAt int64
	n      int64
}

func (r *memReader) Read(p []byte) (int, error) {
	if r.gate != nil && r.n >= snapChunkSize {
		<-r.gate
	}
	if r.failAt > 0 && r.n >= r.failAt {
		return 0, errors.New("disk read error")
	}
	n, err := r.r.Read(p)
	r.n += int64(n)
	return n, err
}

func (r *memReader) Close() error { return nil }

func (s *memSnapshots) Receive(m raftpb.SnapshotMetadata, size int64) (SnapshotSink, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sinks++
	return &memSink{s: s, key: [2]uint64{m.Index, m.Term}, size: size}, nil
}

type memSink struct {
	s         *memSnapshots
	key       [2]uint64
	size      int64
	buf       bytes.Buffer
	committed bool
}

func (k *memSink) Write(p []byte) (int, error) {
	k.s.mu.Lock()
	fail := k.s.failWrite
	k.s.mu.Unlock()
	if fail {
		return 0, errors.New("disk full")
	}
	return k.buf.Write(p)
}

func (k *memSink) Commit() error {
	if int64(k.buf.Len()) != k.size {
		return fmt.Errorf("committed %d bytes, announced %d", k.buf.Len(), k.size)
	}
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	k.s.received[k.key] = bytes.Clone(k.buf.Bytes())
	k.committed = true
	return nil
}

func (k *memSink) Abort() {
	if k.committed {
		return
	}
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	k.s.aborted++
}

// snapNodes starts two connected transports with snapshot stores and a
// small frame limit; edit adjusts both configurations.
func snapNodes(t *testing.T, edit func(*Config)) (a, b *node, sa, sb *memSnapshots) {
	t.Helper()
	sa, sb = newMemSnapshots(), newMemSnapshots()
	a = startNode(t, 1, func(c *Config) {
		c.MaxFrameSize = 64 << 10
		c.Snapshots = sa
		if edit != nil {
			edit(c)
		}
	})
	b = startNode(t, 2, func(c *Config) {
		c.MaxFrameSize = 64 << 10
		c.Snapshots = sb
		if edit != nil {
			edit(c)
		}
	})
	connect(a, b)
	sendUntilDelivered(t, a, b, heartbeat(1, 2, 1))
	sendUntilDelivered(t, b, a, heartbeat(2, 1, 1))
	return a, b, sa, sb
}

func msgSnap(from, to, index, term uint64) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgSnap, From: from, To: to, Term: term, Snapshot: &raftpb.Snapshot{
		Metadata: raftpb.SnapshotMetadata{Index: index, Term: term, ConfState: raftpb.ConfState{Voters: []uint64{1, 2}}},
	}}
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// waitReports waits until id's snapshot reports are want.
func waitReports(t *testing.T, n *node, id uint64, want ...bool) {
	t.Helper()
	eventually(t, fmt.Sprintf("snapshot reports %v", want), func() bool {
		got := n.rec.snapshotReports(id)
		if len(got) > len(want) {
			t.Fatalf("snapshot reports %v, want %v", got, want)
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
}

// TestSnapshotLargerThanFrameArrives: a snapshot many times the frame limit
// arrives intact, and while it is in the middle of its transfer (the
// sender's reads held at a gate) heartbeats keep flowing both ways.
func TestSnapshotLargerThanFrameArrives(t *testing.T) {
	checkNoLeaks(t)
	a, b, sa, sb := snapNodes(t, nil)
	data := randomBytes(3*snapChunkSize+12345, 1)
	sa.put(10, 2, data)
	gate := make(chan struct{})
	sa.gate = gate
	a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2)})
	eventually(t, "the transfer to start", func() bool {
		return a.SnapshotStats().Sending == 1 && b.SnapshotStats().BytesReceived >= snapChunkSize
	})
	for term := uint64(2); term < 5; term++ {
		sendUntilDelivered(t, a, b, heartbeat(1, 2, term))
		sendUntilDelivered(t, b, a, heartbeat(2, 1, term))
	}
	if _, ok := sb.got(10, 2); ok {
		t.Fatal("the snapshot arrived before the sender's reads were released")
	}
	if b.rec.has(1, raftpb.MsgSnap, 2) {
		t.Fatal("the MsgSnap was delivered before its data arrived")
	}
	close(gate)
	waitReports(t, a, 2, true)
	got, ok := sb.got(10, 2)
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("received %d bytes (ok=%v), want the %d sent", len(got), ok, len(data))
	}
	var snap *raftpb.Message
	for _, m := range b.rec.delivered() {
		if m.Type == raftpb.MsgSnap {
			snap = &m
		}
	}
	if snap == nil || snap.Snapshot.Metadata.Index != 10 || snap.Snapshot.Data != nil {
		t.Fatalf("delivered MsgSnap: %+v, want one for 10/2 without data", snap)
	}
	sst, rst := a.SnapshotStats(), b.SnapshotStats()
	if sst.Sent != 1 || sst.BytesSent != uint64(len(data)) || sst.Sending != 0 || sst.SendSeconds <= 0 ||
		rst.Received != 1 || rst.BytesReceived != uint64(len(data)) || rst.Receiving != 0 {
		t.Fatalf("stats: sender %+v, receiver %+v", sst, rst)
	}
}

// TestSnapshotOnePerPeer: a MsgSnap for a peer with a transfer running
// starts no second one; the running one's report answers both.
func TestSnapshotOnePerPeer(t *testing.T) {
	checkNoLeaks(t)
	a, _, sa, sb := snapNodes(t, nil)
	sa.put(10, 2, randomBytes(2*snapChunkSize, 2))
	gate := make(chan struct{})
	sa.gate = gate
	a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2)})
	eventually(t, "the transfer to start", func() bool { return a.SnapshotStats().Sending == 1 })
	a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2), msgSnap(1, 2, 10, 2)})
	close(gate)
	waitReports(t, a, 2, true)
	if sinks, _, _ := sb.counts(); sinks != 1 {
		t.Fatalf("%d transfers reached the receiver, want 1", sinks)
	}
	// Once it is over, the next MsgSnap starts a new one.
	a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2)})
	waitReports(t, a, 2, true, true)
}

// TestSnapshotInterruptedThenRetried: a transfer that breaks on either side
// (the sender's file, the receiver's disk, the connection) leaves nothing
// behind and is reported failed; the next one succeeds.
func TestSnapshotInterruptedThenRetried(t *testing.T) {
	checkNoLeaks(t)
	a, b, sa, sb := snapNodes(t, func(c *Config) { c.WriteTimeout = time.Second })
	data := randomBytes(3*snapChunkSize, 3)
	sa.put(10, 2, data)
	reports := []bool{}
	for _, tc := range []struct {
		name       string
		fail, mend func()
	}{
		{"sender's read fails", func() { sa.failRead = snapChunkSize + 10 }, func() { sa.failRead = 0 }},
		{"receiver's write fails", func() { sb.mu.Lock(); sb.failWrite = true; sb.mu.Unlock() }, func() { sb.mu.Lock(); sb.failWrite = false; sb.mu.Unlock() }},
	} {
		_, abortedBefore, _ := sb.counts()
		tc.fail()
		a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2)})
		reports = append(reports, false)
		waitReports(t, a, 2, reports...)
		eventually(t, tc.name+": the receiver to abort", func() bool {
			_, aborted, _ := sb.counts()
			return aborted == abortedBefore+1
		})
		if _, ok := sb.got(10, 2); ok || b.rec.has(1, raftpb.MsgSnap, 2) {
			t.Fatalf("%s: a broken transfer was stored or delivered", tc.name)
		}
		tc.mend()
	}
	// The connection cut mid-transfer: the receiver's transport closes.
	gate := make(chan struct{})
	sa.gate = gate
	a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2)})
	eventually(t, "the transfer to start", func() bool { return b.SnapshotStats().Receiving == 1 })
	addrB := b.addr()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	close(gate)
	reports = append(reports, false)
	waitReports(t, a, 2, reports...)
	if _, ok := sb.got(10, 2); ok {
		t.Fatal("a transfer cut short was stored")
	}

	// A fresh receiver at the same address gets the next one whole.
	sb2 := newMemSnapshots()
	b2 := startNode(t, 2, func(c *Config) {
		c.ListenAddr, c.Snapshots, c.MaxFrameSize = addrB, sb2, 64<<10
		c.Peers = map[uint64]string{1: a.addr()}
	})
	sa.gate = nil
	sendUntilDelivered(t, a, b2, heartbeat(1, 2, 7))
	a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2)})
	reports = append(reports, true)
	waitReports(t, a, 2, reports...)
	if got, ok := sb2.got(10, 2); !ok || !bytes.Equal(got, data) {
		t.Fatalf("the retried transfer brought %d bytes (ok=%v), want %d", len(got), ok, len(data))
	}
	if st := a.SnapshotStats(); st.SendFailures != 3 || st.Sent != 1 {
		t.Fatalf("sender stats %+v, want 3 failures and 1 sent", st)
	}
}

// TestSnapshotWithoutStoreDropped: a transport without Snapshots drops a
// MsgSnap and reports it failed.
func TestSnapshotWithoutStoreDropped(t *testing.T) {
	checkNoLeaks(t)
	a := startNode(t, 1, nil)
	b := startNode(t, 2, nil)
	connect(a, b)
	a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2)})
	waitReports(t, a, 2, false)
}

// TestSnapshotRefusedBySize: a receiver refuses a snapshot over its limit
// before storing anything.
func TestSnapshotRefusedBySize(t *testing.T) {
	checkNoLeaks(t)
	a, b, sa, sb := snapNodes(t, func(c *Config) { c.MaxSnapshotBytes = 1000 })
	sa.put(10, 2, make([]byte, 1001))
	a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2)})
	waitReports(t, a, 2, false)
	if sinks, _, _ := sb.counts(); sinks != 0 {
		t.Fatalf("the receiver started storing an oversize snapshot")
	}
	sa.put(11, 2, make([]byte, 1000))
	a.Send([]raftpb.Message{msgSnap(1, 2, 11, 2)})
	waitReports(t, a, 2, false, true)
	if st := b.SnapshotStats(); st.ReceiveFailures != 1 || st.Received != 1 {
		t.Fatalf("receiver stats %+v", st)
	}
}

// TestSnapshotStopsWithTransport: closing the sender, or removing the
// peer, ends a transfer stuck on the sender's side without leaking it.
func TestSnapshotStopsWithTransport(t *testing.T) {
	for _, how := range []string{"close", "remove peer"} {
		t.Run(how, func(t *testing.T) {
			checkNoLeaks(t)
			a, b, sa, sb := snapNodes(t, nil)
			sa.put(10, 2, randomBytes(3*snapChunkSize, 4))
			gate := make(chan struct{})
			sa.gate = gate
			a.Send([]raftpb.Message{msgSnap(1, 2, 10, 2)})
			eventually(t, "the transfer to start", func() bool { return b.SnapshotStats().Receiving == 1 })
			done := make(chan struct{})
			go func() {
				defer close(done)
				if how == "close" {
					_ = a.Close() // returns once the transfer ended
				} else {
					a.RemovePeer(2)
				}
			}()
			// Stopping cut the connection while the sender was held up.
			eventually(t, "the receiver to give up", func() bool { return b.SnapshotStats().Receiving == 0 })
			close(gate)
			<-done
			eventually(t, "the sender to give up", func() bool { return a.SnapshotStats().Sending == 0 })
			if _, ok := sb.got(10, 2); ok {
				t.Fatal("a stopped transfer was stored")
			}
		})
	}
}

// rawSnapStream sends a handshake of kind kindSnapshot from fakePeer and
// then body, and returns the receiver's answer byte (or -1 if it closed
// without one).
func rawSnapStream(t *testing.T, addr string, body []byte) int {
	t.Helper()
	hs := goodHandshake()
	hs.kind = kindSnapshot
	c := rawClient(t, addr, hs.appendTo(nil))
	expectAnswer(t, c, statusOK)
	if _, err := c.Write(body); err != nil {
		t.Fatal(err)
	}
	if cw, ok := c.(*net.TCPConn); ok {
		_ = cw.CloseWrite() // a stream cut short ends here
	}
	var ans [1]byte
	if _, err := io.ReadFull(c, ans[:]); err != nil {
		return -1
	}
	return int(ans[0])
}

// encodeSnapStream returns a whole snapshot stream after the handshake.
func encodeSnapStream(t testing.TB, m raftpb.Message, data []byte, chunk int) []byte {
	t.Helper()
	b, err := appendFrame(nil, &m, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	putUint64(b[len(b)-8:], uint64(len(data)))
	for p := data; len(p) > 0; {
		n := min(len(p), chunk)
		start := len(b)
		b = append(b, make([]byte, 4+n+4)...)
		copy(b[start+4:], p[:n])
		putChunk(b[start:], n)
		p = p[n:]
	}
	return appendEnd(b, crc32.Checksum(data, castagnoli))
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// TestSnapshotStreamRefusals: a receiver checks every part of a snapshot
// stream; whatever is wrong, nothing is stored or delivered, and the
// answer says why.
func TestSnapshotStreamRefusals(t *testing.T) {
	checkNoLeaks(t)
	store := newMemSnapshots()
	srv := startNode(t, 1, func(c *Config) {
		c.Snapshots = store
		c.MaxSnapshotBytes = 1 << 20
		c.Peers = map[uint64]string{fakePeer: "127.0.0.1:1"}
	})
	m := msgSnap(fakePeer, 1, 10, 2)
	data := []byte("0123456789abcdefghij")
	good := encodeSnapStream(t, m, data, 8)
	frameLen := len(frame(t, m))
	chunk1 := frameLen + 8 // offset of the first chunk
	flip := func(off int) []byte {
		b := bytes.Clone(good)
		b[off] ^= 1
		return b
	}
	withMsg := func(edit func(*raftpb.Message)) []byte {
		m2 := msgSnap(fakePeer, 1, 10, 2)
		edit(&m2)
		return encodeSnapStream(t, m2, data, 8)
	}
	for name, tc := range map[string]struct {
		body []byte
		want int
	}{
		"chunk data flipped":     {flip(chunk1 + 5), int(snapCorrupt)},
		"chunk checksum flipped": {flip(chunk1 + 4 + 8), int(snapCorrupt)},
		"end checksum flipped":   {flip(len(good) - 1), int(snapCorrupt)},
		"size too small":         {flip(chunk1 - 1), int(snapCorrupt)}, // 20 -> 21: ends short
		"oversize chunk":         {append(bytes.Clone(good[:chunk1]), 0, 0x10, 0, 1), int(snapCorrupt)},
		"over the limit":         {append(frame(t, m), 0, 0, 0, 0, 0, 0x20, 0, 0), int(snapTooLarge)}, // 2 MiB
		"cut short":              {good[:len(good)-3], int(snapCorrupt)},
		"not a MsgSnap":          {withMsg(func(m *raftpb.Message) { m.Type = raftpb.MsgApp; m.Snapshot = nil }), int(snapCorrupt)},
		"forged sender":          {withMsg(func(m *raftpb.Message) { m.From = 5 }), int(snapCorrupt)},
		"inline data":            {withMsg(func(m *raftpb.Message) { m.Snapshot.Data = []byte("x") }), int(snapCorrupt)},
	} {
		t.Run(name, func(t *testing.T) {
			if got := rawSnapStream(t, srv.addr(), tc.body); got != tc.want {
				t.Fatalf("answer %d, want %d", got, tc.want)
			}
		})
	}
	if _, _, received := store.counts(); received != 0 || srv.rec.has(fakePeer, raftpb.MsgSnap, 2) {
		t.Fatal("a refused stream was stored or delivered")
	}
	if got := rawSnapStream(t, srv.addr(), good); got != int(snapOK) {
		t.Fatalf("the good stream: answer %d", got)
	}
	if got, _ := store.got(10, 2); !bytes.Equal(got, data) || !srv.rec.has(fakePeer, raftpb.MsgSnap, 2) {
		t.Fatalf("the good stream stored %q", got)
	}
}

// FuzzChunkReader: whatever the bytes, decoding a snapshot stream's chunks
// never panics, allocates no more than a chunk, fails only with a
// *snapError, and accepts only data that encodes back to the same bytes.
func FuzzChunkReader(f *testing.F) {
	m := msgSnap(1, 2, 10, 2)
	head := len(frame(f, m)) + 8
	f.Add(encodeSnapStream(f, m, []byte("some snapshot data"), 5)[head:], uint64(18))
	f.Add(encodeSnapStream(f, m, nil, 5)[head:], uint64(0))
	f.Add([]byte{0, 0, 0, 1, 'x', 0, 0, 0, 0}, uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, size uint64) {
		cr := chunkReader{r: bytes.NewReader(b), size: size}
		var data []byte
		for {
			chunk, err := cr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var se *snapError
				if !errors.As(err, &se) {
					t.Fatalf("error is not a *snapError: %v", err)
				}
				return
			}
			data = append(data, chunk...)
		}
		if uint64(len(data)) != size {
			t.Fatalf("accepted %d bytes of a %d byte snapshot", len(data), size)
		}
		// Re-encoded with the chunks as they came, it is the input.
		var again []byte
		rest := data
		for in := b; len(in) >= 4 && len(rest) > 0; {
			n := int(uint32(in[0])<<24 | uint32(in[1])<<16 | uint32(in[2])<<8 | uint32(in[3]))
			start := len(again)
			again = append(again, make([]byte, 4+n+4)...)
			copy(again[start+4:], rest[:n])
			putChunk(again[start:], n)
			rest, in = rest[n:], in[4+n+4:]
		}
		again = appendEnd(again, crc32.Checksum(data, castagnoli))
		if !bytes.Equal(again, b[:len(again)]) {
			t.Fatalf("accepted bytes do not re-encode the same")
		}
	})
}
