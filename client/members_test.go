package client

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"
)

func TestMembers(t *testing.T) {
	a := newFakeNode(t, "a", "a", ok(`{"cluster_id": "00000000000000cc", "leader": "a", "members": [{"name": "a", "id": "00000000000000aa", "addr": "127.0.0.1:7001", "role": "voter", "match": 7, "lag": 0}]}`))
	m, err := newClient(t, []*fakeNode{a}).Membership(ctx(t))
	if err != nil || m.ClusterID != "00000000000000cc" || m.Leader != "a" || len(m.Members) != 1 {
		t.Fatalf("Membership = %+v, %v", m, err)
	}
	if mb := m.Members[0]; mb.Name != "a" || mb.Role != "voter" || mb.Match == nil || *mb.Match != 7 || mb.Lag == nil {
		t.Fatalf("member %+v", mb)
	}
}

// TestMemberChanges: each call sends its request, follows a follower's
// redirect to the leader, and maps the refusals to their errors.
func TestMemberChanges(t *testing.T) {
	var got []string
	leader := newFakeNode(t, "b", "b", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+string(body))
		var req memberRequest
		json.Unmarshal(body, &req)
		switch {
		case req.Name == "dup":
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error": "member exists", "code": "member_exists"}`)
		case req.ClusterID == "ff":
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error": "another cluster", "code": "wrong_cluster"}`)
		case r.URL.Path == "/v1/members/ghost":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error": "not a member", "code": "not_member"}`)
		case r.URL.Path == "/v1/members/last":
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error": "last voter", "code": "last_voter"}`)
		case r.URL.Path == "/v1/members/busy/promote":
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error": "pending", "code": "change_pending"}`)
		default:
			io.WriteString(w, `{"cluster_id": "cc", "leader": "b", "members": [], "member": {"name": "x"}}`)
		}
	})
	// The follower knows no leader (so the client stays with it) and
	// redirects every change.
	follower := newFakeNode(t, "a", "none", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, leader.srv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	})
	c := newClient(t, []*fakeNode{follower})
	if m, err := c.AddMember(ctx(t), "n4", "h:4", AsLearner()); err != nil || m.Member == nil || m.Member.Name != "x" {
		t.Fatalf("AddMember: %+v, %v", m, err)
	}
	if _, err := c.Join(ctx(t), "n5", "h:5", ""); err != nil {
		t.Fatalf("Join: %v", err)
	}
	if _, err := c.RemoveMember(ctx(t), "n4"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	if _, err := c.PromoteMember(ctx(t), "n5"); err != nil {
		t.Fatalf("PromoteMember: %v", err)
	}
	want := []string{
		`POST /v1/members {"name":"n4","peer_addr":"h:4","learner":true}`,
		`POST /v1/members {"name":"n5","peer_addr":"h:5","learner":true,"join":true}`,
		`DELETE /v1/members/n4 `,
		`POST /v1/members/n5/promote `,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the leader got %q, want %q", got, want)
	}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{second(c.AddMember(ctx(t), "dup", "h:1")), ErrMemberExists},
		{second(c.Join(ctx(t), "n6", "h:6", "ff")), ErrWrongCluster},
		{second(c.RemoveMember(ctx(t), "ghost")), ErrNotMember},
		{second(c.RemoveMember(ctx(t), "last")), ErrLastVoter},
		{second(c.PromoteMember(ctx(t), "busy")), ErrChangePending},
	} {
		var e *Error
		if !errors.Is(tc.err, tc.want) || !errors.As(tc.err, &e) || errors.Is(tc.err, ErrUnavailable) {
			t.Errorf("got %v, want %v", tc.err, tc.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }
