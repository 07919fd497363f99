package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
)

// metrics are the server's Prometheus metrics, registered on a private
// registry (Config.Registry or a new one), never the global one, so that
// several servers can run in one process (tests, `raftkv dev`).
//
// Raft's own numbers (term, commit, applied) are read from the node's
// status, and its counters (elections, leader changes, WAL fsyncs) from
// node.Stats, at scrape time; the counters below are counted where things
// happen. Request metrics are labelled by api ("resp", "http") and command
// name: both come from fixed tables, so the label sets stay small.
type metrics struct {
	proposals       prometheus.Counter
	proposalRetries prometheus.Counter
	readIndexes     prometheus.Counter
	requests        *prometheus.HistogramVec // api, command
	requestErrors   *prometheus.CounterVec   // api, command, kind
	respClients     prometheus.Gauge
}

// Kinds of request errors, the "kind" label of raftkv_request_errors_total.
const (
	errKindClient      = "client"      // refused: bad syntax, limits, not an integer...
	errKindUnavailable = "unavailable" // no leader or commit within the bounded wait
	errKindInternal    = "internal"
)

func newMetrics(reg *prometheus.Registry, s *Server) (*metrics, error) {
	m := &metrics{
		proposals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_proposals_total",
			Help: "Proposals this server handed to the node, retries included.",
		}),
		proposalRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_proposal_retries_total",
			Help: "Proposals made again (same request id) because no leader was known or a copy was not applied in time.",
		}),
		readIndexes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftkv_read_index_requests_total",
			Help: "Read-index requests made for linearizable reads.",
		}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftkv_request_duration_seconds",
			Help:    "Latency of client requests by api and command, from parsed to answered.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18), // 50µs .. 6.5s
		}, []string{"api", "command"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_request_errors_total",
			Help: "Client requests answered with an error, by api, command and kind (client, unavailable, internal).",
		}, []string{"api", "command", "kind"}),
		respClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raftkv_resp_connected_clients",
			Help: "Open RESP connections.",
		}),
	}
	status := func(f func(st node.Status) float64) func() float64 {
		return func() float64 { return f(s.node.Status()) }
	}
	cs := []prometheus.Collector{
		m.proposals, m.proposalRetries, m.readIndexes,
		m.requests, m.requestErrors, m.respClients,
		newNodeCollector(s.node),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "raftkv_applied_commands_total",
			Help: "Commands the state machine applied since the server started.",
		}, func() float64 { return float64(s.sm.applies.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_term", Help: "The node's current raft term.",
		}, status(func(st node.Status) float64 { return float64(st.Term) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_commit_index", Help: "The highest log index this node knows committed.",
		}, status(func(st node.Status) float64 { return float64(st.Commit) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_applied_index", Help: "The highest log index applied to the state machine.",
		}, status(func(st node.Status) float64 { return float64(st.Applied) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_apply_lag_entries", Help: "Committed entries not yet applied (commit - applied).",
		}, status(func(st node.Status) float64 { return float64(applyLag(st)) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_is_leader", Help: "1 if this node is the leader, else 0.",
		}, status(func(st node.Status) float64 { return boolFloat(st.Role == raft.Leader) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_has_leader", Help: "1 if this node knows a leader, else 0.",
		}, status(func(st node.Status) float64 { return boolFloat(st.Lead != 0) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_keys", Help: "Keys in the local store.",
		}, func() float64 { return float64(s.store.Read(&kv.Command{Op: kv.OpCount}).Int) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftkv_sessions_in_use", Help: "Server-side kv sessions held by writes in flight.",
		}, func() float64 { return float64(s.sessions.inUse()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// nodeCollector exports the node's cumulative counts (node.Stats) at scrape
// time: the node keeps them in atomics, so a scrape costs a few loads, and
// the node needs no metrics library. Counting since the node started, not
// the server, is what Prometheus counters want: a restart resets both.
type nodeCollector struct {
	node     Node
	fsync    *prometheus.Desc
	bounds   []float64 // of fsync's buckets
	counters []nodeCounter
}

// nodeCounter is one field of node.Stats exported as a counter.
type nodeCounter struct {
	desc  *prometheus.Desc
	value func(st *node.Stats) uint64
}

var _ prometheus.Collector = (*nodeCollector)(nil)

func newNodeCollector(n Node) *nodeCollector {
	counter := func(name, help string, value func(st *node.Stats) uint64) nodeCounter {
		return nodeCounter{prometheus.NewDesc(name, help, nil, nil), value}
	}
	return &nodeCollector{
		node: n,
		fsync: prometheus.NewDesc("raftkv_wal_fsync_duration_seconds",
			"Latency of the WAL's fsyncs; one fsync makes a whole batch of entries durable.", nil, nil),
		bounds: node.FsyncBucketBounds(),
		counters: []nodeCounter{
			counter("raftkv_wal_entries_persisted_total", "Log entries the WAL made durable.",
				func(st *node.Stats) uint64 { return st.EntriesPersisted }),
			counter("raftkv_elections_total", "Elections this node started (terms it entered as a candidate).",
				func(st *node.Stats) uint64 { return st.Campaigns }),
			counter("raftkv_leader_changes_total", "Leaderships this node learned of: a new leader, or a leader in a new term.",
				func(st *node.Stats) uint64 { return st.LeaderChanges }),
			counter("raftkv_raft_proposals_dropped_total", "Proposals raft refused because no leader was known or leadership was being transferred.",
				func(st *node.Stats) uint64 { return st.ProposalsDropped }),
			counter("raftkv_raft_messages_sent_total", "Raft messages handed to the transport.",
				func(st *node.Stats) uint64 { return st.MessagesSent }),
			counter("raftkv_raft_messages_received_total", "Raft messages received from peers.",
				func(st *node.Stats) uint64 { return st.MessagesReceived }),
			counter("raftkv_raft_readies_total", "Ready batches the node's loop handled (each is at most one WAL write).",
				func(st *node.Stats) uint64 { return st.Readies }),
		},
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.fsync
	for _, nc := range c.counters {
		ch <- nc.desc
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.node.Stats()
	buckets := make(map[float64]uint64, len(c.bounds))
	for i, v := range st.FsyncBuckets {
		if i < len(c.bounds) {
			buckets[c.bounds[i]] = v
		}
	}
	ch <- prometheus.MustNewConstHistogram(c.fsync, st.Fsyncs, st.FsyncSeconds, buckets)
	for _, nc := range c.counters {
		ch <- prometheus.MustNewConstMetric(nc.desc, prometheus.CounterValue, float64(nc.value(&st)))
	}
}

// observe records one answered request. kind is "" for a success.
func (m *metrics) observe(api, command string, start time.Time, kind string) {
	m.requests.WithLabelValues(api, command).Observe(time.Since(start).Seconds())
	if kind != "" {
		m.requestErrors.WithLabelValues(api, command, kind).Inc()
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
