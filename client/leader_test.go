package client

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestTransferLeader: the client asks for the transfer, and returns once
// the nodes name the new leader, which the next calls then go to.
func TestTransferLeader(t *testing.T) {
	var a, b, c *fakeNode
	transfer := func(w http.ResponseWriter, r *http.Request) {
		switch to := r.URL.Query().Get("to"); {
		case r.URL.Path == "/v1/leader/transfer" && (to == "b" || to == "a"):
			// The answering node sees b lead; c learns it later.
			a.elect(to, 3)
			b.elect(to, 3)
			io.WriteString(w, `{"leader": "`+to+`"}`)
		case r.URL.Path == "/v1/leader/transfer":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error": "to must name a member: ?to=<name>", "code": "bad_request"}`)
		default:
			io.WriteString(w, "v")
		}
	}
	a = newFakeNode(t, "a", "a", transfer)
	b = newFakeNode(t, "b", "a", transfer)
	c = newFakeNode(t, "c", "a", transfer)
	cl := newClient(t, []*fakeNode{a, b, c})
	if err := cl.TransferLeader(ctx(t), "b"); err != nil {
		t.Fatalf("TransferLeader(b): %v", err)
	}
	if want := []string{"POST /v1/leader/transfer?to=b "}; !slices.Equal(a.requests(), want) {
		t.Fatalf("requests to the old leader %q, want %q", a.requests(), want)
	}
	if _, err := cl.Get(ctx(t), "k"); err != nil || len(b.requests()) != 1 {
		t.Fatalf("Get after the transfer: %v, requests to the new leader %q; want the read there", err, b.requests())
	}

	err := cl.TransferLeader(ctx(t), "nobody")
	var e *Error
	if !errors.Is(err, ErrNotMember) || !errors.As(err, &e) || e.StatusCode != http.StatusBadRequest || errors.Is(err, ErrUnavailable) {
		t.Fatalf("TransferLeader(nobody): %v; want ErrNotMember and the 400", err)
	}
	if n := len(b.requests()); n != 2 {
		t.Fatalf("%d requests to the leader after the refused transfer, want 2: a 400 is not retried", n)
	}
	if err := cl.TransferLeader(ctx(t), ""); !errors.Is(err, ErrNotMember) {
		t.Fatalf("TransferLeader(\"\"): %v; want ErrNotMember", err)
	}
}

// TestTransferLeaderWaits: a node answered that the transfer is done, but
// until the others in the highest term agree, TransferLeader waits.
func TestTransferLeaderWaits(t *testing.T) {
	var a, b *fakeNode
	a = newFakeNode(t, "a", "a", func(w http.ResponseWriter, r *http.Request) {
		// Another node has seen a newer term, in which nobody leads yet.
		b.elect("none", 4)
		io.WriteString(w, `{"leader": "b"}`)
	})
	b = newFakeNode(t, "b", "a", ok(""))
	cl := newClient(t, []*fakeNode{a, b}, WithTimeout(100*time.Millisecond))
	if err := cl.TransferLeader(ctx(t), "b"); !errors.Is(err, ErrNoLeader) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("TransferLeader: %v; want ErrNoLeader, nobody leads the newest term", err)
	}

}

func TestTransferLeaderNoLeader(t *testing.T) {
	a := newFakeNode(t, "a", "none", unavailable(""))
	cl := newClient(t, []*fakeNode{a}, WithTimeout(50*time.Millisecond))
	err := cl.TransferLeader(ctx(t), "a")
	if !errors.Is(err, ErrNoLeader) || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotMember) {
		t.Fatalf("TransferLeader: %v; want ErrNoLeader and ErrUnavailable", err)
	}
}
