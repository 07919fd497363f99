package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Errors of TransferLeader, matched with errors.Is.
var (
	// ErrNotMember: the name given is not a member of the cluster.
	ErrNotMember = errors.New("raftkv: not a member")
	// ErrNoLeader: no node that answered knew a leader. Errors wrapping it
	// also wrap ErrUnavailable.
	ErrNoLeader = errors.New("raftkv: no leader")
)

// TransferLeader hands leadership to the member called name and returns
// once the nodes that answer, in the highest term any of them reports,
// name it leader. It fails with an error wrapping ErrNotMember if no member
// has that name, and with one wrapping ErrUnavailable (and ErrNoLeader if
// that was the cause) when the cluster did not hand over before ctx ended
// or the client's timeout passed; saying why may then take up to half a
// second more. Asking for the member that already leads succeeds at once.
func (c *Client) TransferLeader(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("transfer leadership: %w: the name is empty", ErrNotMember)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// The request is safe to repeat: it names the outcome, not a step.
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/leader/transfer", query: url.Values{"to": {name}}})
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusBadRequest {
		return fmt.Errorf("transfer leadership to %s: %w: %w", name, ErrNotMember, err)
	}
	if err != nil {
		return fmt.Errorf("transfer leadership to %s: %w", name, c.explainUnavailable(ctx, err))
	}
	// The node that answered sees name lead; the others may learn it a
	// little later.
	if err := c.waitLeader(ctx, name); err != nil {
		return fmt.Errorf("transfer leadership to %s: %w", name, err)
	}
	return nil
}

// explainLook bounds the look at the cluster that explains a failed
// transfer: it runs after the deadline has passed.
const explainLook = 500 * time.Millisecond

// explainUnavailable adds ErrNoLeader to err when a quick look at the
// cluster finds no node that knows a leader. The look outlives ctx's
// deadline by at most explainLook, and is skipped when ctx was cancelled:
// whoever cancelled wants no more waiting.
func (c *Client) explainUnavailable(ctx context.Context, err error) error {
	if !errors.Is(err, ErrUnavailable) || errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), explainLook)
	defer cancel()
	all, serr := c.Status(ctx)
	if serr != nil {
		return err
	}
	if _, known := leaderOf(all); !known {
		return fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	return err
}

// waitLeader polls the endpoints' status until the answers in the highest
// term name name as leader and name itself, if it answers, says it leads,
// or ctx ends. The answers are read one node after another, so a peer may
// already name the new leader while the leader's own, earlier answer still
// says candidate: then the next poll settles it.
func (c *Client) waitLeader(ctx context.Context, name string) error {
	tick := time.NewTicker(c.backoff[0])
	defer tick.Stop()
	var last string
	for {
		all, err := c.Status(ctx)
		if err == nil {
			leader, known := leaderOf(all)
			if leader == name && selfLeads(all, name) {
				c.use(all, name)
				c.rediscover.Store(false)
				return nil
			}
			last = "none"
			if known {
				last = leader
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			if last == "none" {
				return fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrNoLeader, ctx.Err())
			}
			return fmt.Errorf("%w: waiting for it to lead (last leader seen: %q): %w", ErrUnavailable, last, ctx.Err())
		}
	}
}

// leaderOf returns the leader that the answers of the highest term name,
// and whether any of them names one.
func leaderOf(all []NodeStatus) (leader string, known bool) {
	var term uint64
	for _, ns := range all {
		if ns.Err == nil && ns.Status.Term > term {
			term = ns.Status.Term
		}
	}
	for _, ns := range all {
		if ns.Err == nil && ns.Status.Term == term && ns.Status.Leader != "none" && ns.Status.Leader != "" {
			return ns.Status.Leader, true
		}
	}
	return "", false
}

// selfLeads reports whether member name says it is leader, or did not
// answer (then the others' word is all there is).
func selfLeads(all []NodeStatus, name string) bool {
	for _, ns := range all {
		if ns.Err == nil && ns.Status.Name == name {
			return ns.Status.Role == "leader"
		}
	}
	return true
}

// use points later calls at the endpoint of the member called name, if it
// is among the answers.
func (c *Client) use(all []NodeStatus, name string) {
	for i, ns := range all {
		if ns.Err == nil && ns.Status.Name == name {
			c.cur.Store(int64(i))
			return
		}
	}
}
