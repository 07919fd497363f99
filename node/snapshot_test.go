package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage"
)

// blobMachine is a StateMachine with a large state made by small commands:
// "blob <key> <size> <seed>" sets key to size pseudo-random bytes drawn from
// seed, which the image holds in full and Restore checks byte for byte. So
// a test gets a snapshot of hundreds of MiB from a log of a few entries, and
// memory for neither. Every command counts in ops.
type blobMachine struct {
	mu       sync.Mutex // guards the fields below
	blobs    map[string]blobSpec
	ops      uint64
	restores int
}

type blobSpec struct {
	size int64
	seed uint64
}

func newBlobMachine() *blobMachine { return &blobMachine{blobs: make(map[string]blobSpec)} }

func (m *blobMachine) Apply(index uint64, data []byte) any {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops++
	var key string
	var spec blobSpec
	if _, err := fmt.Sscanf(string(data), "blob %s %d %d", &key, &spec.size, &spec.seed); err == nil {
		m.blobs[key] = spec
	}
	return index
}

// state returns what the machine holds, for comparisons.
func (m *blobMachine) state() (uint64, map[string]blobSpec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops, maps.Clone(m.blobs)
}

func (m *blobMachine) restoreCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.restores
}

func (m *blobMachine) Snapshot() (io.WriterTo, error) {
	ops, blobs := m.state()
	return blobView{ops: ops, blobs: blobs}, nil
}

// blobView is a blobMachine's state frozen by Snapshot.
type blobView struct {
	ops   uint64
	blobs map[string]blobSpec
}

// blobBytes returns the generator of a blob's bytes.
func blobBytes(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func (v blobView) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	head := binary.AppendUvarint(nil, v.ops)
	head = binary.AppendUvarint(head, uint64(len(v.blobs)))
	bw.Write(head)
	n := int64(len(head))
	for _, k := range slices.Sorted(maps.Keys(v.blobs)) {
		spec := v.blobs[k]
		var rec []byte
		rec = binary.AppendUvarint(rec, uint64(len(k)))
		rec = append(rec, k...)
		rec = binary.AppendUvarint(rec, uint64(spec.size))
		rec = binary.AppendUvarint(rec, spec.seed)
		bw.Write(rec)
		k, err := io.CopyN(bw, blobBytes(spec.seed), spec.size)
		n += int64(len(rec)) + k
		if err != nil {
			return n, err
		}
	}
	return n, bw.Flush()
}

func (m *blobMachine) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 256<<10)
	ops, err := binary.ReadUvarint(br)
	if err != nil {
		return err
	}
	count, err := binary.ReadUvarint(br)
	if err != nil {
		return err
	}
	blobs := make(map[string]blobSpec)
	want, got := make([]byte, 64<<10), make([]byte, 64<<10)
	for range count {
		klen, err := binary.ReadUvarint(br)
		if err != nil || klen > 1<<10 {
			return fmt.Errorf("key length %d: %v", klen, err)
		}
		key := make([]byte, klen)
		if _, err := io.ReadFull(br, key); err != nil {
			return err
		}
		size, err := binary.ReadUvarint(br)
		if err != nil {
			return err
		}
		seed, err := binary.ReadUvarint(br)
		if err != nil {
			return err
		}
		gen := blobBytes(seed)
		for left := int64(size); left > 0; {
			k := min(left, int64(len(want)))
			if _, err := io.ReadFull(gen, want[:k]); err != nil {
				return err
			}
			if _, err := io.ReadFull(br, got[:k]); err != nil {
				return fmt.Errorf("blob %s: %w", key, err)
			}
			if !bytes.Equal(want[:k], got[:k]) {
				return fmt.Errorf("blob %s differs from what its seed makes", key)
			}
			left -= k
		}
		blobs[string(key)] = blobSpec{int64(size), seed}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("data after the image (%v)", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops, m.blobs = ops, blobs
	m.restores++
	return nil
}

// gatedRecorder is a recorder whose snapshot views wait, before writing,
// until gate is closed.
type gatedRecorder struct {
	*recorder
	gate chan struct{}
	// fail, if set, makes the next view's WriteTo fail (once).
	fail atomic.Bool
}

func (g *gatedRecorder) Snapshot() (io.WriterTo, error) {
	v, err := g.recorder.Snapshot()
	return gatedView{v, g}, err
}

type gatedView struct {
	io.WriterTo
	g *gatedRecorder
}

var errSnapDisk = errors.New("snapshot disk failed")

func (v gatedView) WriteTo(w io.Writer) (int64, error) {
	<-v.g.gate
	if v.g.fail.CompareAndSwap(true, false) {
		return 0, errSnapDisk
	}
	return v.WriterTo.WriteTo(w)
}

// TestSnapshotWriteDoesNotStopApplying: while a snapshot is being written
// (its view held at a gate), commands keep being applied and answered, and
// the log is not compacted; once the file is durable, it is. The snapshot
// holds the state as of its index, not of when it was written.
func TestSnapshotWriteDoesNotStopApplying(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.SnapshotEntries = 5
		cfg.CatchUpEntries = -1
	})
	g := &gatedRecorder{recorder: &recorder{}, gate: make(chan struct{})}
	c.sms[0] = g.recorder
	c.startWith(0, g)
	n := c.nodes[0]
	c.leader()
	index := make(map[string]uint64)
	for k := range 6 {
		cmd := fmt.Sprint("before-", k)
		index[cmd] = c.propose(0, cmd)
	}
	eventually(t, "a snapshot to be in progress", func() bool { return n.Stats().Snapshots.Writing })
	first, _ := n.store.FirstIndex()
	c.proposeN(0, "during", 20) // applied and answered while the snapshot waits
	if st := n.Stats().Snapshots; !st.Writing || st.Taken != 0 {
		t.Fatalf("snapshot stats while the view is held: %+v", st)
	}
	if now, _ := n.store.FirstIndex(); now != first {
		t.Fatalf("the log was compacted (first index %d, was %d) before the snapshot was durable", now, first)
	}
	close(g.gate)
	eventually(t, "the snapshot to be saved", func() bool { return n.Stats().Snapshots.Taken == 1 })
	eventually(t, "the log to be compacted", func() bool {
		now, _ := n.store.FirstIndex()
		return now > first
	})
	sn, _ := n.store.Snapshot()
	var want []string
	for _, cmd := range g.commands() {
		if i, ok := index[cmd]; ok && i <= sn.Metadata.Index {
			want = append(want, cmd)
		}
	}
	if got := readRecorderSnapshot(t, n, sn.Metadata.Index, sn.Metadata.Term); !slices.Equal(got, want) {
		t.Fatalf("snapshot at index %d holds %q, want %q", sn.Metadata.Index, got, want)
	}
	all := g.commands()
	c.stop(0)
	c.start(0)
	if c.sms[0].restoreCount() != 1 {
		t.Fatal("the restart did not restore from a snapshot")
	}
	c.waitApplied(0, all)
}

// readRecorderSnapshot decodes a snapshot of a recorder: an empty node
// section, then the commands.
func readRecorderSnapshot(t *testing.T, n *Node, index, term uint64) []string {
	t.Helper()
	r, err := n.store.OpenSnapshot(index, term)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	size, k := binary.Uvarint(b)
	if err != nil || k <= 0 || uint64(len(b)-k) < size {
		t.Fatalf("snapshot data %q, %v: want a node section first", b, err)
	}
	if _, err := unmarshalDirectory(b[k : k+int(size)]); err != nil {
		t.Fatalf("snapshot's node section: %v", err)
	}
	var rec recorder
	if err := rec.Restore(bytes.NewReader(b[k+int(size):])); err != nil {
		t.Fatal(err)
	}
	return rec.commands()
}

// TestSnapshotFailureRetried: a snapshot that fails to write is counted,
// logged, and taken again later; the log is compacted only by the one
// that succeeds.
func TestSnapshotFailureRetried(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.SnapshotEntries = 5 })
	g := &gatedRecorder{recorder: &recorder{}, gate: make(chan struct{})}
	close(g.gate)
	g.fail.Store(true)
	c.sms[0] = g.recorder
	c.startWith(0, g)
	n := c.nodes[0]
	c.leader()
	c.proposeN(0, "a", 6)
	eventually(t, "the failure to be counted", func() bool { return n.Stats().Snapshots.Failed == 1 })
	if sn, _ := n.store.Snapshot(); !sn.IsEmpty() {
		t.Fatalf("a failed snapshot was saved: %+v", sn.Metadata)
	}
	c.proposeN(0, "b", 6)
	eventually(t, "a snapshot to be taken", func() bool { return n.Stats().Snapshots.Taken == 1 })
	if names := snapDirNames(t, c.cfgs[0].DataDir); len(names) != 1 || !strings.HasSuffix(names[0], ".snap") {
		t.Fatalf("snapshot directory holds %q, want one snapshot", names)
	}
}

func snapDirNames(t *testing.T, dataDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "snap"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// proposeBlobs makes the leader's state total bytes, in blobs of at most
// 16 MiB, then proposes enough small commands that the leader takes a
// snapshot holding them, and waits until it has compacted its log.
func proposeBlobs(c *cluster, lead int, total int64, snapshotEntries uint64) {
	c.t.Helper()
	for k := 0; total > 0; k++ {
		size := min(total, 16<<20)
		c.propose(lead, fmt.Sprintf("blob b%02d %d %d", k, size, k+1))
		total -= size
	}
	last := c.propose(lead, "last blob proposed")
	c.proposeN(lead, "fill", int(snapshotEntries))
	n := c.nodes[lead]
	eventually(c.t, "the leader to compact its log past the blobs", func() bool {
		sn, _ := n.store.Snapshot()
		first, _ := n.store.FirstIndex()
		return sn.Metadata.Index >= last && first > sn.Metadata.Index
	})
}

// writer proposes small commands through a node until stopped, counting
// what succeeds.
type writer struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	done       chan struct{}
}

func startWriter(n *Node) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := proposeWhenLed(ctx, n, fmt.Sprintf("w%d", i))
			cancel()
			if err != nil {
				w.failed.Add(1)
			} else {
				w.ok.Add(1)
			}
		}
	}()
	return w
}

func (w *writer) finish() { close(w.stop); <-w.done }

// waitSameState waits until every node has applied the same index and
// their blob machines agree.
func waitSameState(t *testing.T, c *cluster, sms []*blobMachine) {
	t.Helper()
	eventually(t, "every node to apply the same state", func() bool {
		var applied []uint64
		for _, n := range c.nodes {
			applied = append(applied, n.Status().Applied)
		}
		if slices.Min(applied) != slices.Max(applied) {
			return false
		}
		ops0, blobs0 := sms[0].state()
		for _, sm := range sms[1:] {
			ops, blobs := sm.state()
			if ops != ops0 || !maps.Equal(blobs, blobs0) {
				return false
			}
		}
		return true
	})
}

// TestFollowerCatchesUpFromLargeSnapshot: a follower that was down while
// the others compacted their logs catches up from a snapshot (well over the
// 64 MiB a single message may carry, but in -short), while writes go on.
func TestFollowerCatchesUpFromLargeSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
	}{{"4MiB", 4 << 20}, {"96MiB", 96 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.size > 8<<20 {
				t.Skip("large snapshot: not in -short")
			}
			const snapEvery = 300
			c := newCluster(t, 3, func(cfg *Config) {
				cfg.SnapshotEntries = snapEvery
				cfg.CatchUpEntries = -1 // compact everything: only a snapshot can help
			})
			sms := []*blobMachine{newBlobMachine(), newBlobMachine(), newBlobMachine()}
			for i := range 3 {
				c.startWith(i, sms[i])
			}
			lead := c.leader()
			f := c.follower(lead)
			c.propose(lead, "blob small 100 7")
			c.stop(f)

			proposeBlobs(c, lead, tc.size, snapEvery)
			ln := c.nodes[lead]

			w := startWriter(ln)
			sms[f] = newBlobMachine()
			c.startWith(f, sms[f])
			fn := c.nodes[f]
			eventually(t, "the follower to install the leader's snapshot", func() bool {
				return fn.Stats().Snapshots.Restored >= 1 && sms[f].restoreCount() >= 1
			})
			during := w.ok.Load()
			eventually(t, "writes to go on after the install", func() bool { return w.ok.Load() > during+10 })
			w.finish()
			waitSameState(t, c, sms)

			st := fn.Stats().Transfers
			if st.Received < 1 || st.BytesReceived < uint64(tc.size) {
				t.Fatalf("follower's transfer stats %+v, want a snapshot of at least %d bytes", st, tc.size)
			}
			if w.ok.Load() == 0 {
				t.Fatal("no write succeeded while the follower caught up")
			}
			t.Logf("%d writes succeeded and %d failed while the follower caught up from %d bytes", w.ok.Load(), w.failed.Load(), st.BytesReceived)
		})
	}
}

// proxy forwards connections to target, and can hold them: all of them
// (paused), or those that have forwarded more than holdAfter bytes from the
// dialer (a snapshot stream, unlike message streams in these tests).
type proxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex // guards the fields below
	cond      *sync.Cond
	paused    bool
	holdAfter int64
	closed    bool
	conns     []net.Conn
	wg        sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Go(p.serve)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) set(paused bool, holdAfter int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused, p.holdAfter = paused, holdAfter
	p.cond.Broadcast()
}

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(out, in, true) })
		p.wg.Go(func() { p.pipe(in, out, false) })
	}
}

// pipe copies src to dst, waiting while the proxy holds the data.
func (p *proxy) pipe(dst, src net.Conn, fromDialer bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	var forwarded int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for !p.closed && (p.paused || (fromDialer && p.holdAfter > 0 && forwarded > p.holdAfter)) {
				p.cond.Wait()
			}
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
			forwarded += int64(n)
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.cond.Broadcast()
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// copyDir copies a data directory as a crash would leave it: every file as
// it is now.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestartMidTransferKeepsPreviousState: a follower that crashes while
// it receives a snapshot comes back with the state it had before, never a
// mix with the partial snapshot, whose file is removed; then it catches up.
// The follower's peer address goes through a proxy that holds the
// snapshot's stream part way; the crash is a copy of its data directory.
func TestRestartMidTransferKeepsPreviousState(t *testing.T) {
	const snapEvery = 100
	listen := freeAddr(t)
	var px *proxy
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = snapEvery
		cfg.CatchUpEntries = -1
		if px == nil {
			px = startProxy(t, listen)
			cfg.Members[2].Addr = px.addr() // shared by every config
		}
		if cfg.Name == cfg.Members[2].Name {
			cfg.PeerAddr = listen
		}
	})
	const f = 2
	sms := []*blobMachine{newBlobMachine(), newBlobMachine(), newBlobMachine()}
	for i := range 3 {
		c.startWith(i, sms[i])
	}
	lead := c.leader()
	if lead == f {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := c.nodes[f].TransferLeadership(ctx, c.id(0)); err != nil {
			t.Fatal(err)
		}
		lead = c.leader()
	}
	c.propose(lead, "blob before 1000 3")
	waitSameState(t, c, sms)
	ops, before := sms[f].state()
	applied := c.nodes[f].Status().Applied
	c.stop(f)
	proposeBlobs(c, lead, 24<<20, snapEvery)

	// The follower restarts and receives the snapshot until the proxy
	// holds it, 4 MiB in.
	px.set(false, 4<<20)
	sms[f] = newBlobMachine()
	c.startWith(f, sms[f])
	fn := c.nodes[f]
	eventually(t, "the transfer to be held part way", func() bool {
		st := fn.Stats().Transfers
		return st.Receiving == 1 && st.BytesReceived >= 2<<20
	})
	px.set(true, 4<<20) // nothing reaches the follower: its disk is quiet
	crashed := t.TempDir()
	copyDir(t, c.cfgs[f].DataDir, crashed)
	if err := fn.Close(); err != nil {
		t.Fatal(err)
	}
	c.nodes[f] = nil
	if names := snapDirNames(t, crashed); !slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, ".tmp") }) {
		t.Fatalf("the crashed directory holds no partial snapshot (%q): the test tests nothing", names)
	}

	c.cfgs[f].DataDir = crashed
	sms[f] = newBlobMachine()
	c.startWith(f, sms[f])
	fn = c.nodes[f]
	if names := snapDirNames(t, crashed); slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, ".tmp") }) {
		t.Fatalf("the partial snapshot survived the restart: %q", names)
	}
	// Held from the network, it can only replay what its own log holds
	// committed: the state it had, or an earlier one (the commit index is
	// not written for every commit), with nothing of the leader's
	// snapshot.
	eventually(t, "the follower to replay its own log", func() bool {
		st := fn.Status()
		return st.Applied == st.Commit
	})
	gotOps, got := sms[f].state()
	if st := fn.Status(); st.Applied > applied || gotOps > ops || sms[f].restoreCount() != 0 {
		t.Fatalf("restarted at applied index %d, %d ops, %d snapshot restores; it had applied %d, %d ops",
			st.Applied, gotOps, sms[f].restoreCount(), applied, ops)
	}
	for k, spec := range got {
		if before[k] != spec {
			t.Fatalf("the restarted follower holds blob %s %+v, which it did not have before", k, spec)
		}
	}

	px.set(false, 0)
	waitSameState(t, c, sms)
	if sms[f].restoreCount() != 1 {
		t.Fatalf("the follower caught up with %d snapshot restores, want 1", sms[f].restoreCount())
	}
}

// TestNodeSection: restoring reads the node section, refusing one that
// claims more than the limit before allocating for it, or one cut short.
func TestNodeSection(t *testing.T) {
	store, err := storage.Open(t.TempDir(), storage.Options{NodeID: 1, ClusterID: 1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	n := &Node{store: store, stats: new(stats), cfg: Config{StateMachine: &recorder{}}}
	dirSection := directory{members: []memberInfo{{Member: NewMember("n1", "127.0.0.1:7001")}}}.marshal()
	for i, tc := range []struct {
		data []byte
		want string // in the error; "" for success
	}{
		{append(binary.AppendUvarint(nil, maxNodeSection+1), 0), "limit"},
		{binary.AppendUvarint(nil, 5), "node section"},
		{append(binary.AppendUvarint(nil, 1), 0, '['), "directory"},
		{append(append(binary.AppendUvarint(nil, uint64(len(dirSection))), dirSection...), `["a"]`...), ""},
	} {
		md := raftpb.SnapshotMetadata{Index: uint64(10 + i), Term: 1}
		if err := store.SaveSnapshot(raftpb.Snapshot{Metadata: md, Data: tc.data}); err != nil {
			t.Fatal(err)
		}
		a := &applier{}
		err := n.restoreSnapshot(a, md)
		if tc.want == "" {
			if err != nil || a.applied != md.Index {
				t.Fatalf("case %d: %v, applied %d", i, err, a.applied)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("case %d: got %v, want an error about the %s", i, err, tc.want)
		}
		if a.applied != 0 {
			t.Fatalf("case %d: a refused snapshot moved the applier", i)
		}
	}
}
