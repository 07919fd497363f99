package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Status is a node's state, as GET /v1/status reports it.
type Status struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	ClusterID string   `json:"cluster_id"`
	Role      string   `json:"role"`
	Term      uint64   `json:"term"`
	Vote      string   `json:"vote"`
	Leader    string   `json:"leader"` // member name, or "none"
	Commit    uint64   `json:"commit"`
	Applied   uint64   `json:"applied"`
	Members   []Member `json:"members"`
	// Progress is the leader's view of each member, by name; empty on
	// other nodes.
	Progress map[string]Progress `json:"progress"`
}

// Member is one node of the cluster.
type Member struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	Addr string `json:"addr"` // peer address
	// Role is "voter", "learner", or "leaving" (a voter of the
	// configuration being left, while a change of voters completes).
	Role string `json:"role,omitempty"`
	// Promote: a learner that joined, which the leader promotes to voter
	// once it has caught up.
	Promote bool `json:"promote,omitempty"`
	// Match and Lag are the leader's view of the member's log (the last
	// index known replicated to it, and how many entries it lacks); nil
	// when the answering node does not lead.
	Match *uint64 `json:"match,omitempty"`
	Lag   *uint64 `json:"lag,omitempty"`
}

// Progress is the leader's view of one member's log.
type Progress struct {
	Match        uint64 `json:"match"`
	Next         uint64 `json:"next"`
	State        string `json:"state"`
	RecentActive bool   `json:"recent_active"`
	Inflight     int    `json:"inflight"`
	Lag          uint64 `json:"lag"`
}

// NodeStatus is one endpoint's answer to Status: its status, or why it
// did not answer.
type NodeStatus struct {
	Endpoint string
	Status   Status
	Err      error
}

// Status asks every endpoint for its status, concurrently, and returns the
// answers in the order of the endpoints. It fails only if none answered.
func (c *Client) Status(ctx context.Context) ([]NodeStatus, error) {
	out := make([]NodeStatus, len(c.endpoints))
	var wg sync.WaitGroup
	for i, ep := range c.endpoints {
		out[i].Endpoint = ep
		wg.Go(func() { out[i].Status, out[i].Err = c.statusOf(ctx, ep) })
	}
	wg.Wait()
	for _, ns := range out {
		if ns.Err == nil {
			return out, nil
		}
	}
	return out, fmt.Errorf("%w: %w", ErrUnavailable, out[0].Err)
}

func (c *Client) statusOf(ctx context.Context, ep string) (Status, error) {
	status, body, _, err := c.send(ctx, ep, request{method: http.MethodGet, path: "/v1/status"}, "")
	if err != nil {
		return Status{}, err
	}
	if status != http.StatusOK {
		return Status{}, replyError(status, body).err
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return Status{}, fmt.Errorf("decode status from %s: %w", ep, err)
	}
	return st, nil
}

// discoverEvery rate-limits leader discovery, and discoverTimeout bounds
// it: a node that hangs must not hold up the call that discovers.
const (
	discoverEvery   = 500 * time.Millisecond
	discoverTimeout = time.Second
)

// endpoint returns the endpoint to try next, first looking for the leader
// if the client has not yet or the endpoint in use failed.
func (c *Client) endpoint(ctx context.Context) string {
	if c.rediscover.Load() {
		c.discover(ctx)
	}
	return c.endpoints[c.cur.Load()]
}

// discover points the client at the leader, as the answering nodes name it
// in the highest term they report. Calls that find discovery already under
// way go on with the current endpoint rather than wait.
func (c *Client) discover(ctx context.Context) {
	if !c.discoverMu.TryLock() {
		return
	}
	defer c.discoverMu.Unlock()
	if !c.rediscover.Load() || time.Since(c.lastDisc) < discoverEvery {
		return
	}
	c.lastDisc = time.Now()
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	defer cancel()
	all, _ := c.Status(ctx)
	var leader string
	var term uint64
	for _, ns := range all {
		if ns.Err == nil && ns.Status.Leader != "none" && ns.Status.Term >= term {
			leader, term = ns.Status.Leader, ns.Status.Term
		}
	}
	if leader != "" {
		c.use(all, leader)
	}
	// If the leader is not among the endpoints, or none is known yet, any
	// node serves: keep the current one until it fails.
	c.rediscover.Store(false)
}

// failover moves away from ep after it failed, to the next endpoint, and
// has the next call look for the leader. Of several calls that saw ep
// fail, only the first moves.
func (c *Client) failover(ep string) {
	i := c.cur.Load()
	if c.endpoints[i] != ep {
		return
	}
	if c.cur.CompareAndSwap(i, (i+1)%int64(len(c.endpoints))) {
		c.rediscover.Store(true)
	}
}
