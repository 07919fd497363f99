package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// Errors of the membership calls, matched with errors.Is (ErrNotMember is
// declared with TransferLeader's).
var (
	// ErrMemberExists: a member has the name or peer address given.
	ErrMemberExists = errors.New("raftkv: member exists")
	// ErrChangePending: another membership change is under way; try
	// again once it is done.
	ErrChangePending = errors.New("raftkv: another membership change is under way")
	// ErrLastVoter: the change would leave the cluster without a voter.
	ErrLastVoter = errors.New("raftkv: cannot remove the last voter")
	// ErrWrongCluster: the node asking to join belongs to another
	// cluster.
	ErrWrongCluster = errors.New("raftkv: another cluster")
)

// errorCodes maps the server's error codes to the client's sentinels.
var errorCodes = map[string]error{
	"not_found":      ErrNotFound,
	"not_member":     ErrNotMember,
	"member_exists":  ErrMemberExists,
	"change_pending": ErrChangePending,
	"last_voter":     ErrLastVoter,
	"wrong_cluster":  ErrWrongCluster,
}

// Membership is the cluster's membership as one node knows it.
type Membership struct {
	// ClusterID is the cluster's id, in hex.
	ClusterID string `json:"cluster_id"`
	// Leader is the leader's name, or "none".
	Leader string `json:"leader"`
	// Members are in order of name. Their Match and Lag are set when the
	// answering node leads (the client asks the leader when it can).
	Members []Member `json:"members"`
	// Member is the member a change added, removed or promoted.
	Member *Member `json:"member,omitempty"`
}

// Members returns the cluster's members, as the node that answers (the
// leader, if the client knows it) knows them, in order of name.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	m, err := c.Membership(ctx)
	return m.Members, err
}

// Membership returns the cluster's membership as the node that answers
// (the leader, if the client knows it) knows it.
func (c *Client) Membership(ctx context.Context) (Membership, error) {
	var out Membership
	if err := c.doJSON(ctx, request{method: http.MethodGet, path: "/v1/members"}, &out); err != nil {
		return Membership{}, fmt.Errorf("list members: %w", err)
	}
	return out, nil
}

// MemberOption changes how AddMember adds a member.
type MemberOption func(*memberRequest)

// AsLearner adds the member as a learner: it receives the log but does not
// vote, until PromoteMember makes it a voter.
func AsLearner() MemberOption { return func(r *memberRequest) { r.Learner = true } }

// memberRequest is the body of POST /v1/members.
type memberRequest struct {
	Name      string `json:"name"`
	PeerAddr  string `json:"peer_addr"`
	Learner   bool   `json:"learner,omitempty"`
	Join      bool   `json:"join,omitempty"`
	ClusterID string `json:"cluster_id,omitempty"`
}

// AddMember adds a member called name that its peers reach at peerAddr,
// as a voter unless AsLearner is given, and returns once the cluster has
// applied the change. Only the leader changes the membership: the client
// goes to it. It fails with errors wrapping ErrMemberExists or
// ErrChangePending, as the cluster refuses. A new voter counts toward the
// quorum at once: start it first, or add it as a learner and promote it
// once it caught up (a node started with raftkv serve --join does both).
func (c *Client) AddMember(ctx context.Context, name, peerAddr string, opts ...MemberOption) (Membership, error) {
	req := memberRequest{Name: name, PeerAddr: peerAddr}
	for _, o := range opts {
		o(&req)
	}
	return c.changeMembers(ctx, fmt.Sprintf("add member %s", name), http.MethodPost, "/v1/members", req)
}

// Join asks the cluster to add a new node called name, whose peers reach
// it at peerAddr, as a learner that the leader promotes to voter once it
// has caught up. clusterID, if not empty, is the cluster the node's data
// directory belongs to (hex): the cluster refuses a node of another one
// (ErrWrongCluster). Asking again for the same node succeeds. The answer
// carries the cluster's id and members, which the new node starts with.
func (c *Client) Join(ctx context.Context, name, peerAddr, clusterID string) (Membership, error) {
	req := memberRequest{Name: name, PeerAddr: peerAddr, Learner: true, Join: true, ClusterID: clusterID}
	return c.changeMembers(ctx, fmt.Sprintf("join as %s", name), http.MethodPost, "/v1/members", req)
}

// RemoveMember removes the member called name, voter or learner, and
// returns once the cluster has applied the change. It fails with errors
// wrapping ErrNotMember, ErrLastVoter or ErrChangePending.
func (c *Client) RemoveMember(ctx context.Context, name string) (Membership, error) {
	return c.changeMembers(ctx, fmt.Sprintf("remove member %s", name), http.MethodDelete, "/v1/members/"+url.PathEscape(name), nil)
}

// PromoteMember makes the learner called name a voter, and returns once
// the cluster has applied the change. It fails with errors wrapping
// ErrNotMember or ErrChangePending.
func (c *Client) PromoteMember(ctx context.Context, name string) (Membership, error) {
	return c.changeMembers(ctx, fmt.Sprintf("promote member %s", name), http.MethodPost, "/v1/members/"+url.PathEscape(name)+"/promote", nil)
}

// changeMembers sends a membership change. The request carries no request
// id: a change is not repeated by the cluster, and one retried after its
// outcome was unknown is refused if it was applied (ErrMemberExists,
// ErrNotMember) rather than applied twice.
func (c *Client) changeMembers(ctx context.Context, what, method, path string, body any) (Membership, error) {
	r := request{method: method, path: path}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Membership{}, fmt.Errorf("%s: %w", what, err)
		}
		r.body = b
	}
	var out Membership
	if err := c.doJSON(ctx, r, &out); err != nil {
		return Membership{}, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
