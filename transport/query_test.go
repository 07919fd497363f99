package transport

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestQuery(t *testing.T) {
	checkNoLeaks(t)
	var gotFrom uint64
	b := startNode(t, 2, func(c *Config) {
		c.ClusterID = 99 // queries do not check it
		c.Query = func(from uint64, req []byte) ([]byte, error) {
			gotFrom = from
			if string(req) == "refuse" {
				return nil, errors.New("not today")
			}
			return append([]byte("echo:"), req...), nil
		}
	})
	// a knows no peers, and b does not know a: queries work all the same.
	a := startNode(t, 1, nil)
	ctx := context.Background()

	ans, err := a.Query(ctx, 2, b.addr(), []byte("hello"))
	if err != nil || string(ans) != "echo:hello" || gotFrom != 1 {
		t.Fatalf("query: got %q, %v from %d; want echo:hello from 1", ans, err, gotFrom)
	}
	big := bytes.Repeat([]byte{'x'}, MaxQuerySize)
	if _, err := a.Query(ctx, 2, b.addr(), big); err == nil {
		// The answer would exceed the limit: refused rather than cut.
		t.Fatal("a query whose answer exceeds MaxQuerySize was answered")
	}
	if _, err := a.Query(ctx, 2, b.addr(), []byte("refuse")); !errors.Is(err, ErrQueryRefused) || !bytes.Contains([]byte(err.Error()), []byte("not today")) {
		t.Fatalf("refused query: got %v, want ErrQueryRefused with the reason", err)
	}
	if _, err := a.Query(ctx, 3, b.addr(), []byte("hello")); !errors.Is(err, errWrongReceiver) {
		t.Fatalf("query meant for another node: got %v, want errWrongReceiver", err)
	}
	if _, err := b.Query(ctx, 1, a.addr(), []byte("hello")); !errors.Is(err, errBadKind) {
		t.Fatalf("query to a node that answers none: got %v, want errBadKind", err)
	}
	for _, size := range []int{0, MaxQuerySize + 1} {
		if _, err := a.Query(ctx, 2, b.addr(), make([]byte, size)); err == nil {
			t.Fatalf("query of %d bytes was sent", size)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.Query(cctx, 2, b.addr(), []byte("hello")); !errors.Is(err, context.Canceled) {
		t.Fatalf("query with a cancelled context: got %v, want context.Canceled", err)
	}
}

// TestQueryOversizeRequestRefused: an acceptor reads no request above the
// limit, whatever the dialer announces.
func TestQueryOversizeRequestRefused(t *testing.T) {
	b := startNode(t, 2, func(c *Config) {
		c.Query = func(uint64, []byte) ([]byte, error) { return []byte("ok"), nil }
	})
	hs := handshake{version: protocolVersion, kind: kindQuery, from: 1, to: 2}
	c := rawClient(t, b.addr(), hs.appendTo(nil))
	expectAnswer(t, c, statusOK)
	if _, err := c.Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
}
