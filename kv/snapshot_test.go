package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"testing"
)

// richStore has keys (an empty one, one with a value of bigSize bytes) and
// sessions remembering an integer, an old value and an error.
func richStore(t testing.TB, bigSize int) *Store {
	t.Helper()
	s := New()
	big := bytes.Repeat([]byte("0123456789"), bigSize/10)
	for _, c := range []Command{
		{Op: OpSet, Key: b(""), Value: b("empty key")},
		{Op: OpMSet, Keys: bs("a", "b", "c"), Values: [][]byte{b("1"), nil, big}},
		{Op: OpIncrBy, ID: RequestID{ClientID: 7, Seq: 1}, Key: b("a"), Delta: 41},
		{Op: OpSet, ID: RequestID{ClientID: 3, Seq: 4}, Key: b("b"), Value: b("new"), GetOld: true},
		{Op: OpSet, ID: RequestID{ClientID: 3, Seq: 5}, Key: b("a"), Value: b("x"), GetOld: true},
		{Op: OpIncrBy, ID: RequestID{ClientID: 1 << 63, Seq: 1}, Key: b("c"), Delta: 1},
		{Op: OpSet, ID: RequestID{ClientID: 5, Seq: 1}, Key: b("z"), Value: b("v"), NX: true},
	} {
		applyNext(t, s, c)
	}
	s.Apply(20, nil)
	return s
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *Store
	}{{"empty", New()}, {"rich", richStore(t, 2*snapshotChunk)}} {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapshotBytes(t, tc.s)
			r := restored(t, snap)
			if again := snapshotBytes(t, r); !bytes.Equal(again, snap) {
				t.Fatalf("snapshot of the restored store differs:\n%q\n%q", again, snap)
			}
			if r.AppliedIndex() != tc.s.AppliedIndex() {
				t.Errorf("applied = %d, want %d", r.AppliedIndex(), tc.s.AppliedIndex())
			}
			// Both answer retries, new requests and reads alike.
			for _, c := range []Command{
				{Op: OpSet, ID: RequestID{ClientID: 3, Seq: 5}, Key: b("a"), Value: b("x"), GetOld: true},
				{Op: OpIncrBy, ID: RequestID{ClientID: 1 << 63, Seq: 1}, Key: b("c"), Delta: 1},
				{Op: OpIncrBy, ID: RequestID{ClientID: 7, Seq: 2}, Key: b("a"), Delta: 1},
				{Op: OpScan, Limit: 100},
				{Op: OpMGet, Keys: bs("", "a", "b", "c", "z")},
			} {
				want, got := applyNext(t, tc.s, c), applyNext(t, r, c)
				if !sameResult(got, want) {
					t.Errorf("%v: restored store answers %v, original %v", c.Op, got, want)
				}
			}
		})
	}
}

func TestRestoreRefusesCorruption(t *testing.T) {
	snap := snapshotBytes(t, richStore(t, 30))
	target := New()
	applyNext(t, target, Command{Op: OpSet, Key: b("old"), Value: b("state")})
	before := snapshotBytes(t, target)
	check := func(what string, in []byte) {
		t.Helper()
		err := target.Restore(bytes.NewReader(in))
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: Restore = %v, want ErrCorrupt", what, err)
		}
		if got := snapshotBytes(t, target); !bytes.Equal(got, before) {
			t.Fatalf("%s: a refused Restore changed the store", what)
		}
	}
	for i := range snap {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(snap)
			c[i] ^= mask
			check(fmt.Sprintf("byte %d ^ %#x", i, mask), c)
		}
	}
	for n := range len(snap) {
		check(fmt.Sprintf("truncated to %d bytes", n), snap[:n])
	}
	check("trailing byte", append(bytes.Clone(snap), 0))
}

// sealed appends the checksum to a hand-made snapshot body, to test the
// checks that the checksum does not cover.
func sealed(parts ...[]byte) []byte {
	body := append([]byte(snapshotMagic), snapshotVersion)
	for _, p := range parts {
		body = append(body, p...)
	}
	return binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
}

func uv(xs ...uint64) []byte {
	var out []byte
	for _, x := range xs {
		out = binary.AppendUvarint(out, x)
	}
	return out
}

func TestRestoreRefusesBadStructure(t *testing.T) {
	key := func(k, v string) []byte {
		return append(append(uv(uint64(len(k))), k...), append(uv(uint64(len(v))), v...)...)
	}
	noSessions := uv(0)
	sess := func(client, seq, last uint64, code, found byte) []byte {
		return append(uv(client, seq, last), code, found, 0, 0)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"magic", append([]byte("XKVS\x01"), sealed(uv(0, 0, 0))[5:]...)},
		{"version", append([]byte("RKVS\x02"), sealed(uv(0, 0, 0))[5:]...)},
		{"keys out of order", sealed(uv(1, 2), key("b", ""), key("a", ""), noSessions)},
		{"duplicate key", sealed(uv(1, 2), key("a", ""), key("a", ""), noSessions)},
		{"key too large", sealed(uv(1, 1), uv(MaxKeySize+1))},
		{"value too large", sealed(uv(1, 1), key("a", "")[:2], uv(MaxValueSize+1))},
		{"more keys than data", sealed(uv(1, 5), key("a", ""), noSessions)},
		{"too many sessions", sealed(uv(1, 0, MaxSessions+1))},
		{"sessions out of order", sealed(uv(9, 0, 2), sess(5, 1, 1, 0, 0), sess(5, 1, 2, 0, 0))},
		{"session client zero", sealed(uv(9, 0, 1), sess(0, 1, 1, 0, 0))},
		{"session seq zero", sealed(uv(9, 0, 1), sess(1, 0, 1, 0, 0))},
		{"session from the future", sealed(uv(9, 0, 1), sess(1, 1, 10, 0, 0))},
		{"unknown error code", sealed(uv(9, 0, 1), sess(1, 1, 1, byte(len(allErrors)+1), 0))},
		{"found not a bool", sealed(uv(9, 0, 1), sess(1, 1, 1, 0, 2))},
		{"value without found", sealed(uv(9, 0, 1), append(uv(1, 1, 1), 0, 0, 0, 1, 'x'))},
		{"bad varint", sealed(bytes.Repeat([]byte{0xff}, 11))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := New().Restore(bytes.NewReader(tc.in)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Restore = %v, want ErrCorrupt", err)
			}
		})
	}
	// The same shapes, made valid, are accepted: the cases above fail for
	// the reason they name.
	ok := sealed(uv(9, 2), key("a", ""), key("b", "v"), uv(2), sess(1, 1, 1, 0, 0), sess(5, 3, 9, errorCode(ErrOverflow), 0))
	if err := New().Restore(bytes.NewReader(ok)); err != nil {
		t.Errorf("valid hand-made snapshot: %v", err)
	}
}

func TestRestoreSessionBytesLimit(t *testing.T) {
	s := newStore(sessionLimits{count: 10, bytes: 2*sessionOverhead + 3})
	body := append(uv(9, 0, 2, 1, 1, 1), 0, 1, 0, 2, 'a', 'b')
	body = append(body, append(uv(2, 1, 2), 0, 1, 0, 2, 'c', 'd')...)
	if err := s.Restore(bytes.NewReader(sealed(body))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Restore of sessions over the byte limit = %v, want ErrCorrupt", err)
	}
}

type failingWriter struct{ left int }

var errDisk = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errDisk
	}
	w.left -= len(p)
	return len(p), nil
}

type failingReader struct {
	r    io.Reader
	left int
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, errDisk
	}
	n, err := r.r.Read(p[:min(len(p), r.left)])
	r.left -= n
	return n, err
}

func TestSnapshotIOErrors(t *testing.T) {
	s := richStore(t, 2*snapshotChunk)
	snap := snapshotBytes(t, s)
	for _, n := range []int{0, 10, len(snap) / 2, len(snap) - 1} {
		w := &failingWriter{left: n}
		if err := s.Snapshot(w); !errors.Is(err, errDisk) {
			t.Errorf("write failing after %d bytes: %v, want errDisk", n, err)
		}
		err := New().Restore(&failingReader{r: bytes.NewReader(snap), left: n})
		if !errors.Is(err, errDisk) || errors.Is(err, ErrCorrupt) {
			t.Errorf("read failing after %d bytes: %v, want errDisk and not ErrCorrupt", n, err)
		}
	}
	if n, err := s.Checkpoint().WriteTo(io.Discard); err != nil || n != int64(len(snap)) {
		t.Errorf("WriteTo = %d, %v; want %d, nil", n, err, len(snap))
	}
}

// TestConcurrentUse runs readers, snapshots and restores of those
// snapshots against a store that keeps applying; with -race it checks the
// locking, and each snapshot must be a consistent cut: entry i sets key i,
// so a snapshot at index n holds exactly n keys.
func TestConcurrentUse(t *testing.T) {
	s := New()
	const n = 2000
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := uint64(1); i <= n; i++ {
			c := Command{Op: OpSet, Key: fmt.Appendf(nil, "k%d", i), Value: b("v")}
			if r := s.Apply(i, c.Marshal()); r.Err != nil {
				t.Errorf("Apply %d: %v", i, r.Err)
				return
			}
		}
	}()
	// loop runs step on a goroutine until the applier is done.
	loop := func(step func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := step(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	read := func() error {
		applied := s.AppliedIndex()
		if c := s.Read(&Command{Op: OpCount}).Int; c < int64(applied) {
			return fmt.Errorf("count %d below applied index %d read before", c, applied)
		}
		s.Read(&Command{Op: OpScan, Limit: 50})
		return nil
	}
	snapshot := func() error {
		var buf bytes.Buffer
		cp := s.Checkpoint()
		if _, err := cp.WriteTo(&buf); err != nil {
			return err
		}
		r := New()
		if err := r.Restore(&buf); err != nil {
			return err
		}
		if c := r.Read(&Command{Op: OpCount}).Int; c != int64(cp.Index()) || r.AppliedIndex() != cp.Index() {
			return fmt.Errorf("snapshot at %d holds %d keys, applied %d", cp.Index(), c, r.AppliedIndex())
		}
		return nil
	}
	for _, step := range []func() error{read, read, snapshot, snapshot} {
		loop(step)
	}
	wg.Wait()
}
