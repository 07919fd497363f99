package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testenv"
)

// TestHTTPMembership drives /v1/members through a follower: reads are
// answered there, changes are redirected to the leader, refusals come back
// with their codes, and the Go client follows it all.
func TestHTTPMembership(t *testing.T) {
	c := newCluster(t, nil)
	lead := c.leader()
	f := c.followers(lead)[0]
	ctx := testContext(t)

	status, _, body := httpDo(t, c.srvs[f], "GET", "/v1/members", nil)
	var m MembersJSON
	if err := json.Unmarshal(body, &m); status != 200 || err != nil || len(m.Members) != 3 || m.Members[0].Role != "voter" || m.Members[0].Match != nil {
		t.Fatalf("members on a follower: %d %s, want three voters without progress", status, body)
	}
	status, _, body = httpDo(t, c.srvs[lead], "GET", "/v1/members", nil)
	if err := json.Unmarshal(body, &m); status != 200 || err != nil || m.Members[0].Match == nil || m.Members[0].Lag == nil {
		t.Fatalf("members on the leader: %d %s, want progress", status, body)
	}

	// A change asked of a follower is redirected to the leader.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+c.srvs[f].HTTPAddr()+"/v1/members", strings.NewReader(`{"name": "n4", "peer_addr": "127.0.0.1:1", "learner": true}`))
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "http://" + c.srvs[lead].HTTPAddr() + "/v1/members"; resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("change on a follower: %d to %q, want 307 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	// The client, given only the follower, follows.
	cl, err := client.New([]string{c.srvs[f].HTTPAddr()}, client.WithTimeout(waitTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	addr := testenv.FreeAddr(t)
	got, err := cl.AddMember(ctx, "n4", addr, client.AsLearner())
	if err != nil || got.Member == nil || got.Member.Name != "n4" || got.Member.Role != "learner" || len(got.Members) != 4 {
		t.Fatalf("add learner n4: %+v, %v", got, err)
	}
	if _, err := cl.AddMember(ctx, "n5", addr); !errors.Is(err, client.ErrMemberExists) {
		t.Fatalf("add at n4's address: got %v, want ErrMemberExists", err)
	}
	if _, err := cl.Join(ctx, "n5", testenv.FreeAddr(t), "00000000000000ff"); !errors.Is(err, client.ErrWrongCluster) {
		t.Fatalf("join from another cluster: got %v, want ErrWrongCluster", err)
	}
	if _, err := cl.PromoteMember(ctx, "nobody"); !errors.Is(err, client.ErrNotMember) {
		t.Fatalf("promote a stranger: got %v, want ErrNotMember", err)
	}
	got, err = cl.RemoveMember(ctx, "n4")
	if err != nil || len(got.Members) != 3 || got.Member.Name != "n4" {
		t.Fatalf("remove n4: %+v, %v", got, err)
	}
	if _, err := cl.RemoveMember(ctx, "n4"); !errors.Is(err, client.ErrNotMember) {
		t.Fatalf("remove n4 again: got %v, want ErrNotMember", err)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/members", `{"name": "n6"}`, 400, "bad_request"},
		{"POST", "/v1/members", `{"name": "n6", "peer_addr": "x:1", "bogus": 1}`, 400, "bad_request"},
		{"POST", "/v1/members", `{"name": "n 6", "peer_addr": "x:1"}`, 400, "bad_request"},
		{"POST", "/v1/members", `{"name": "n6", "peer_addr": "x:1", "cluster_id": "zz"}`, 400, "bad_request"},
		{"POST", "/v1/members/n1/promote", "", 409, "already_voter"},
		{"DELETE", "/v1/members/nobody", "", 404, "not_member"},
	} {
		status, _, body := httpDo(t, c.srvs[lead], tc.method, tc.path, []byte(tc.body))
		var e ErrorJSON
		if err := json.Unmarshal(body, &e); status != tc.status || err != nil || e.Code != tc.code || e.Error == "" {
			t.Errorf("%s %s %s: %d %s; want %d with code %s", tc.method, tc.path, tc.body, status, body, tc.status, tc.code)
		}
	}
	// The follower answers from its own view, which follows the leader's.
	testenv.Eventually(t, "the follower to list three members", func() bool {
		ms, err := cl.Members(ctx)
		return err == nil && len(ms) == 3
	})
}
