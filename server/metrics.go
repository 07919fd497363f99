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
	node    Node
	fsync   *prometheus.Desc
	bounds  []float64 // of fsync's buckets
	metrics []nodeMetric
}

// nodeMetric is one field of node.Stats exported as a counter or gauge.
type nodeMetric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(st *node.Stats) float64
}

var _ prometheus.Collector = (*nodeCollector)(nil)

func newNodeCollector(n Node) *nodeCollector {
	metric := func(typ prometheus.ValueType, name, help string, labels prometheus.Labels, value func(st *node.Stats) float64) nodeMetric {
		return nodeMetric{prometheus.NewDesc(name, help, nil, labels), typ, value}
	}
	counter := func(name, help string, value func(st *node.Stats) uint64) nodeMetric {
		return metric(prometheus.CounterValue, name, help, nil, func(st *node.Stats) float64 { return float64(value(st)) })
	}
	ms := []nodeMetric{
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
		counter("raftkv_snapshots_taken_total", "Snapshots of the state machine written and saved (the log is compacted after each).",
			func(st *node.Stats) uint64 { return st.Snapshots.Taken }),
		counter("raftkv_snapshot_failures_total", "Snapshots of the state machine that failed (retried later).",
			func(st *node.Stats) uint64 { return st.Snapshots.Failed }),
		counter("raftkv_snapshot_written_bytes_total", "Data written by the snapshots taken.",
			func(st *node.Stats) uint64 { return st.Snapshots.Bytes }),
		metric(prometheus.CounterValue, "raftkv_snapshot_write_seconds_total", "Time the snapshots taken spent writing, in the background, from the state machine's view to the durable file.", nil,
			func(st *node.Stats) float64 { return st.Snapshots.Seconds }),
		counter("raftkv_snapshots_restored_total", "Snapshots the state machine was restored from (at start, or sent by the leader).",
			func(st *node.Stats) uint64 { return st.Snapshots.Restored }),
		metric(prometheus.GaugeValue, "raftkv_snapshot_writing", "1 while a snapshot of the state machine is being written, else 0.", nil,
			func(st *node.Stats) float64 { return boolFloat(st.Snapshots.Writing) }),
	}
	// Snapshot transfers, by direction.
	const transfersHelp = "Snapshot transfers to (send) or from (receive) peers that ended, by result: ok once the receiver verified and stored the snapshot."
	for _, dir := range []string{"send", "receive"} {
		of := func(f func(t transferCounts) float64) func(st *node.Stats) float64 {
			return func(st *node.Stats) float64 { return f(transfers(st, dir)) }
		}
		ms = append(ms,
			metric(prometheus.CounterValue, "raftkv_snapshot_transfers_total", transfersHelp,
				prometheus.Labels{"direction": dir, "result": "ok"}, of(func(t transferCounts) float64 { return float64(t.ok) })),
			metric(prometheus.CounterValue, "raftkv_snapshot_transfers_total", transfersHelp,
				prometheus.Labels{"direction": dir, "result": "failed"}, of(func(t transferCounts) float64 { return float64(t.failed) })),
			metric(prometheus.CounterValue, "raftkv_snapshot_transfer_bytes_total", "Snapshot data sent to or received from peers, failed transfers included.",
				prometheus.Labels{"direction": dir}, of(func(t transferCounts) float64 { return float64(t.bytes) })),
			metric(prometheus.CounterValue, "raftkv_snapshot_transfer_seconds_total", "Time the snapshot transfers that ended took.",
				prometheus.Labels{"direction": dir}, of(func(t transferCounts) float64 { return t.seconds })),
			metric(prometheus.GaugeValue, "raftkv_snapshot_transfers_in_flight", "Snapshot transfers in progress.",
				prometheus.Labels{"direction": dir}, of(func(t transferCounts) float64 { return float64(t.inFlight) })),
		)
	}
	return &nodeCollector{
		node: n,
		fsync: prometheus.NewDesc("raftkv_wal_fsync_duration_seconds",
			"Latency of the WAL's fsyncs; one fsync makes a whole batch of entries durable.", nil, nil),
		bounds:  node.FsyncBucketBounds(),
		metrics: ms,
	}
}

// transferCounts are one direction's snapshot transfer counts.
type transferCounts struct {
	ok, failed, bytes uint64
	inFlight          int
	seconds           float64
}

// transfers picks the counts of direction dir ("send" or "receive").
func transfers(st *node.Stats, dir string) transferCounts {
	t := &st.Transfers
	if dir == "send" {
		return transferCounts{t.Sent, t.SendFailures, t.BytesSent, t.Sending, t.SendSeconds}
	}
	return transferCounts{t.Received, t.ReceiveFailures, t.BytesReceived, t.Receiving, t.ReceiveSeconds}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.fsync
	for _, m := range c.metrics {
		ch <- m.desc
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
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(&st))
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
