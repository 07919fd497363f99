package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
)

// Membership over HTTP:
//
//	GET    /v1/members               the members, their roles and (on the leader) progress
//	POST   /v1/members               add one: {"name", "peer_addr", "learner", "join", "cluster_id"}
//	DELETE /v1/members/NAME          remove one
//	POST   /v1/members/NAME/promote  make a learner a voter
//
// Only the leader changes the membership. Another node redirects the
// request there (307, to the leader's client URL, which it asks the leader
// for), or, if it cannot, answers 503 with code not_leader and the
// leader's name, for the client to find it.

// membershipWait bounds a membership change: a change of voters commits,
// then the cluster leaves the joint configuration it entered.
const membershipWait = 10 * time.Second

// maxMemberRequest bounds the body of POST /v1/members.
const maxMemberRequest = 4 << 10

// MemberRequest is the body of POST /v1/members.
type MemberRequest struct {
	Name     string `json:"name"`
	PeerAddr string `json:"peer_addr"`
	// Learner adds a learner rather than a voter.
	Learner bool `json:"learner,omitempty"`
	// Join adds a node that asks to join: a learner that the leader
	// promotes once it has caught up. Asking again is no error.
	Join bool `json:"join,omitempty"`
	// ClusterID is the cluster the asking node's data directory belongs
	// to, if any (hex): a node of another cluster is refused.
	ClusterID string `json:"cluster_id,omitempty"`
}

// MembersJSON is the body of GET /v1/members, and of a successful change.
type MembersJSON struct {
	ClusterID string `json:"cluster_id"`
	// Leader is the leader's name, or "none".
	Leader  string       `json:"leader"`
	Members []MemberJSON `json:"members"`
	// Member is the member a change added, removed or promoted.
	Member *MemberJSON `json:"member,omitempty"`
}

// MemberJSON describes one cluster member.
type MemberJSON struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// Role is voter, learner, or leaving (a voter of the configuration
	// being left, while a change of voters completes).
	Role string `json:"role"`
	// Promote: a learner that joined; the leader promotes it once it has
	// caught up.
	Promote bool `json:"promote,omitempty"`
	// Match and Lag are the leader's view of the member's log: the last
	// index known replicated to it, and how many entries it lacks. Only
	// the leader knows them.
	Match *uint64 `json:"match,omitempty"`
	Lag   *uint64 `json:"lag,omitempty"`
}

func membersJSON(st node.Status) MembersJSON {
	out := MembersJSON{ClusterID: hexID(st.ClusterID), Leader: st.Name(st.Lead), Members: []MemberJSON{}}
	for _, m := range st.Members {
		out.Members = append(out.Members, memberJSON(st, m))
	}
	slices.SortFunc(out.Members, func(a, b MemberJSON) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func memberJSON(st node.Status, m node.MemberState) MemberJSON {
	mj := MemberJSON{Name: m.Name, ID: hexID(m.ID), Addr: m.Addr, Role: string(m.Role), Promote: m.Promote}
	if pr, ok := st.Progress[m.ID]; ok {
		last := st.Progress[st.ID].Match
		lag := last - min(last, pr.Match)
		mj.Match, mj.Lag = &pr.Match, &lag
	}
	return mj
}

func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, membersJSON(s.node.Status()))
}

// handleMemberChange serves the requests that change the membership.
func (s *Server) handleMemberChange(op string, change func(context.Context, *http.Request) (uint64, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		kind := ""
		ctx, cancel := context.WithTimeout(r.Context(), membershipWait)
		defer cancel()
		var (
			id   uint64
			code int
			err  error
		)
		if st := s.node.Status(); st.Role != raft.Leader {
			// Only the leader's view of the members is current enough
			// to judge a change by.
			nl := &node.NotLeaderError{}
			if m, ok := st.Member(st.Lead); ok {
				nl.Leader = m.Member
			}
			err = nl
		} else {
			id, code, err = change(ctx, r)
		}
		switch {
		case errors.Is(err, node.ErrNotLeader):
			kind = s.redirectToLeader(w, r, err)
		case err != nil:
			err = memberError(err)
			var ae *apiError
			if errors.As(err, &ae) && ae.status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
				kind = errKindUnavailable
			}
			if k := writeHTTPError(w, err); kind == "" {
				kind = k
			}
		default:
			st := s.node.Status()
			out := membersJSON(st)
			if m, ok := st.Member(id); ok {
				mj := memberJSON(st, m)
				out.Member = &mj
			} else { // removed
				out.Member = &MemberJSON{Name: r.PathValue("name"), ID: hexID(id)}
			}
			writeJSON(w, code, out)
		}
		s.metrics.observe("http", op, start, kind)
	}
}

func (s *Server) addMember(ctx context.Context, r *http.Request) (uint64, int, error) {
	var req MemberRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxMemberRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return 0, 0, badRequest("the body must be a JSON object with name and peer_addr (at most %d bytes): %v", maxMemberRequest, err)
	}
	if req.Name == "" || req.PeerAddr == "" {
		return 0, 0, badRequest("name and peer_addr are required")
	}
	if req.ClusterID != "" {
		id, err := strconv.ParseUint(req.ClusterID, 16, 64)
		if err != nil {
			return 0, 0, badRequest("cluster_id must be a hex id: %q", req.ClusterID)
		}
		if st := s.node.Status(); id != st.ClusterID {
			return 0, 0, &apiError{http.StatusConflict, "wrong_cluster", fmt.Sprintf(
				"the asking node belongs to cluster %016x; this is cluster %016x", id, st.ClusterID)}
		}
	}
	code := http.StatusCreated
	if _, ok := s.node.Status().MemberByName(req.Name); ok {
		code = http.StatusOK // a joiner asking again; anything else is refused
	}
	var (
		m   node.MemberState
		err error
	)
	if req.Join {
		m, err = s.node.AddJoiner(ctx, req.Name, req.PeerAddr)
	} else {
		m, err = s.node.AddMember(ctx, req.Name, req.PeerAddr, req.Learner)
	}
	return m.ID, code, err
}

// memberID returns the id of the member named by the request's path.
func (s *Server) memberID(r *http.Request) (uint64, error) {
	name := r.PathValue("name")
	if m, ok := s.node.Status().MemberByName(name); ok {
		return m.ID, nil
	}
	return 0, &apiError{http.StatusNotFound, "not_member", fmt.Sprintf("%q is not a member", name)}
}

func (s *Server) removeMember(ctx context.Context, r *http.Request) (uint64, int, error) {
	id, err := s.memberID(r)
	if err != nil {
		return 0, 0, err
	}
	return id, http.StatusOK, s.node.RemoveMember(ctx, id)
}

func (s *Server) promoteMember(ctx context.Context, r *http.Request) (uint64, int, error) {
	id, err := s.memberID(r)
	if err != nil {
		return 0, 0, err
	}
	return id, http.StatusOK, s.node.PromoteMember(ctx, id)
}

// memberError maps the node's refusals to HTTP errors.
func memberError(err error) error {
	conflict := func(code string) error { return &apiError{http.StatusConflict, code, err.Error()} }
	switch {
	case errors.Is(err, node.ErrMemberExists):
		return conflict("member_exists")
	case errors.Is(err, node.ErrNotMember):
		return &apiError{http.StatusNotFound, "not_member", err.Error()}
	case errors.Is(err, node.ErrLastVoter):
		return conflict("last_voter")
	case errors.Is(err, node.ErrAlreadyVoter):
		return conflict("already_voter")
	case errors.Is(err, node.ErrChangePending):
		return conflict("change_pending")
	case errors.Is(err, raft.ErrInvalidConfChange):
		return conflict("invalid_change")
	case errors.Is(err, node.ErrOutcomeUnknown):
		return &apiError{http.StatusServiceUnavailable, "unavailable", err.Error() + " (the change may or may not be applied)"}
	case errors.Is(err, node.ErrNoLeader), errors.Is(err, node.ErrStopped), errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusServiceUnavailable, "unavailable", err.Error()}
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return err
	}
	// What is left is bad input: a name or address the node refused.
	return &apiError{http.StatusBadRequest, "bad_request", err.Error()}
}

// redirectToLeader sends the client to the leader's client URL, for the
// same request, or says who leads if that URL is not to be had.
func (s *Server) redirectToLeader(w http.ResponseWriter, r *http.Request, err error) string {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	base, uerr := s.node.LeaderClientURL(ctx)
	if uerr == nil {
		if u, perr := url.Parse(base); perr == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
			http.Redirect(w, r, strings.TrimSuffix(u.String(), "/")+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return ""
		}
	}
	var nl *node.NotLeaderError
	out := ErrorJSON{Error: err.Error(), Code: "not_leader"}
	if errors.As(err, &nl) && nl.Leader.ID != 0 {
		out.Leader = nl.Leader.Name
	}
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, out)
	return errKindUnavailable
}
