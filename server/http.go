// Package server is raftkv's client-facing side. So far it serves the
// operational HTTP endpoints: GET /v1/status (the node's raft state as JSON)
// and GET /healthz. The key-value API builds on the same handler.
package server

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/raftkv/raftkv/node"
)

// StatusSource is what the operational endpoints need from a node;
// *node.Node implements it.
type StatusSource interface {
	Status() node.Status
	// Done is closed once the node stops serving.
	Done() <-chan struct{}
}

var _ StatusSource = (*node.Node)(nil)

// NewHTTPHandler returns the operational HTTP endpoints of n.
func NewHTTPHandler(n StatusSource) http.Handler {
	mux := http.NewServeMux()
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
	return mux
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

// MemberJSON describes one cluster member.
type MemberJSON struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// ProgressJSON is the leader's view of one member's log.
type ProgressJSON struct {
	Match        uint64 `json:"match"`
	Next         uint64 `json:"next"`
	State        string `json:"state"`
	RecentActive bool   `json:"recent_active"`
	Inflight     int    `json:"inflight"`
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
		out.Members = append(out.Members, MemberJSON{Name: m.Name, ID: hexID(m.ID), Addr: m.Addr})
	}
	slices.SortFunc(out.Members, func(a, b MemberJSON) int { return cmp.Compare(a.Name, b.Name) })
	if s.Progress != nil {
		out.Progress = make(map[string]ProgressJSON, len(s.Progress))
		for id, p := range s.Progress {
			out.Progress[s.Name(id)] = ProgressJSON{
				Match: p.Match, Next: p.Next, State: p.State.String(),
				RecentActive: p.RecentActive, Inflight: p.Inflight,
			}
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
