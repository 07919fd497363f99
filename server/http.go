package server

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/node"
)

// newHTTPHandler returns the whole HTTP API: the key-value endpoints under
// /v1/kv/ and the operational ones.
func (s *Server) newHTTPHandler() http.Handler {
	mux := http.NewServeMux()
	handleOps(mux, s.node)
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("GET /v1/members", s.handleMembers)
	mux.HandleFunc("POST /v1/members", s.handleMemberChange("member_add", s.addMember))
	mux.HandleFunc("DELETE /v1/members/{name}", s.handleMemberChange("member_remove", s.removeMember))
	mux.HandleFunc("POST /v1/members/{name}/promote", s.handleMemberChange("member_promote", s.promoteMember))
	mux.HandleFunc("POST /v1/leader/transfer", s.handleTransfer)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{
		ErrorLog:      slogPrintln{s},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      s.cfg.Registry,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(dashboardHTML)
	})
	return &httpAPI{s: s, mux: mux}
}

// httpAPI routes /v1/kv/ itself, from the escaped path: ServeMux would
// clean the path first and redirect keys such as "a//b" or "x/../y".
type httpAPI struct {
	s   *Server
	mux *http.ServeMux
}

func (h *httpAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(path, "/v1/kv/"); ok {
		h.s.serveKV(w, r, rest)
		return
	}
	if path == "/v1/kv" {
		h.s.serveKV(w, r, "")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// handleOps registers /v1/status and /healthz.
func handleOps(mux *http.ServeMux, n Node) {
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, statusJSON(n.Status()))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-n.Done():
			http.Error(w, "stopped", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	})
}

// readyWait bounds how long /readyz waits for the node to apply what it
// knows committed.
const readyWait = time.Second

// ReadyJSON is the body of GET /readyz.
type ReadyJSON struct {
	Ready   bool   `json:"ready"`
	Reason  string `json:"reason,omitempty"`
	Leader  string `json:"leader"`
	Commit  uint64 `json:"commit"`
	Applied uint64 `json:"applied"`
}

// handleReady answers 200 once the node knows a leader and has applied
// the commit index it saw when asked, 503 otherwise: a load balancer then
// sends requests only to nodes that can serve them without a long wait.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	st := s.node.Status()
	out := ReadyJSON{Ready: true, Leader: st.Name(st.Lead), Commit: st.Commit}
	select {
	case <-s.node.Done():
		out.Ready, out.Reason = false, "node stopped"
	default:
		if st.Lead == 0 {
			out.Ready, out.Reason = false, "no leader known"
			break
		}
		ctx, cancel := context.WithTimeout(r.Context(), readyWait)
		defer cancel()
		if err := s.sm.waitApplied(ctx, st.Commit); err != nil {
			out.Ready = false
			out.Reason = fmt.Sprintf("applied %d of %d committed entries", s.store.AppliedIndex(), st.Commit)
		}
	}
	out.Applied = s.store.AppliedIndex()
	code := http.StatusOK
	if !out.Ready {
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, out)
}

// LeaderJSON is the body of a successful POST /v1/leader/transfer.
type LeaderJSON struct {
	Leader string `json:"leader"`
}

// transferWait bounds a leadership transfer: the target must catch up and
// win an election, which takes about an election timeout.
const transferWait = 10 * time.Second

// handleTransfer hands leadership to the member named by ?to= and answers
// once this node sees it lead.
func (s *Server) handleTransfer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	err := s.transfer(w, r)
	kind := ""
	if err != nil {
		kind = writeHTTPError(w, err)
	}
	s.metrics.observe("http", "transfer", start, kind)
}

func (s *Server) transfer(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("to")
	st := s.node.Status()
	var to uint64
	for _, m := range st.Members {
		if m.Name == name && m.Role == node.RoleVoter {
			to = m.ID
		}
	}
	if to == 0 {
		return badRequest("to must name a voter: ?to=<name>")
	}
	ctx, cancel := context.WithTimeout(r.Context(), transferWait)
	defer cancel()
	if err := s.node.TransferLeadership(ctx, to); err != nil {
		return &apiError{http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("transfer leadership to %s: %v", name, err)}
	}
	writeJSON(w, http.StatusOK, LeaderJSON{Leader: name})
	return nil
}

// StatusJSON is the body of GET /v1/status. Ids are hex strings: JSON
// numbers lose precision above 2^53 in many clients.
type StatusJSON struct {
	ID        string                  `json:"id"`
	Name      string                  `json:"name"`
	ClusterID string                  `json:"cluster_id"`
	Role      string                  `json:"role"`
	Term      uint64                  `json:"term"`
	Vote      string                  `json:"vote"`   // member name, or "none"
	Leader    string                  `json:"leader"` // member name, or "none"
	Commit    uint64                  `json:"commit"`
	Applied   uint64                  `json:"applied"`
	Members   []MemberJSON            `json:"members"`
	Progress  map[string]ProgressJSON `json:"progress,omitempty"` // leader only, by member name
}

// ProgressJSON is the leader's view of one member's log.
type ProgressJSON struct {
	Match        uint64 `json:"match"`
	Next         uint64 `json:"next"`
	State        string `json:"state"`
	RecentActive bool   `json:"recent_active"`
	Inflight     int    `json:"inflight"`
	// Lag is how many entries of the leader's log the member lacks.
	Lag uint64 `json:"lag"`
}

func hexID(id uint64) string { return fmt.Sprintf("%016x", id) }

func statusJSON(s node.Status) StatusJSON {
	out := StatusJSON{
		ID:        hexID(s.ID),
		Name:      s.Name(s.ID),
		ClusterID: hexID(s.ClusterID),
		Role:      s.Role.String(),
		Term:      s.Term,
		Vote:      s.Name(s.Vote),
		Leader:    s.Name(s.Lead),
		Commit:    s.Commit,
		Applied:   s.Applied,
	}
	for _, m := range s.Members {
		out.Members = append(out.Members, MemberJSON{Name: m.Name, ID: hexID(m.ID), Addr: m.Addr, Role: string(m.Role), Promote: m.Promote})
	}
	slices.SortFunc(out.Members, func(a, b MemberJSON) int { return cmp.Compare(a.Name, b.Name) })
	if s.Progress != nil {
		out.Progress = make(map[string]ProgressJSON, len(s.Progress))
		for _, p := range peerProgress(s) {
			out.Progress[p.Name] = p.ProgressJSON
		}
	}
	return out
}

// namedProgress is a member's progress with its name.
type namedProgress struct {
	Name string
	ProgressJSON
}

// peerProgress returns the leader's view of every member, by name.
func peerProgress(s node.Status) []namedProgress {
	last := s.Progress[s.ID].Match // the leader's own log
	out := make([]namedProgress, 0, len(s.Progress))
	for id, p := range s.Progress {
		out = append(out, namedProgress{Name: s.Name(id), ProgressJSON: ProgressJSON{
			Match: p.Match, Next: p.Next, State: p.State.String(),
			RecentActive: p.RecentActive, Inflight: p.Inflight,
			Lag: last - min(last, p.Match),
		}})
	}
	slices.SortFunc(out, func(a, b namedProgress) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func applyLag(st node.Status) uint64 { return st.Commit - min(st.Commit, st.Applied) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// slogPrintln adapts the server's logger to promhttp's error log.
type slogPrintln struct{ s *Server }

func (l slogPrintln) Println(v ...any) { l.s.log.Warn("metrics", "err", fmt.Sprint(v...)) }

var _ promhttp.Logger = slogPrintln{}

//go:embed dashboard.html
var dashboardHTML []byte
