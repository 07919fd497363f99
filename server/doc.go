// Package server is raftkv's client-facing side: it serves one node's
// key-value store over the Redis protocol (RESP) and HTTP, with the
// operational endpoints (status, health, readiness, metrics, a dashboard).
//
// # Wiring
//
//	sm := server.NewStateMachine(kv.New())
//	n, err := node.Start(node.Config{..., StateMachine: sm})
//	srv, err := server.New(server.Config{
//		RedisAddr: "127.0.0.1:6381", HTTPAddr: "127.0.0.1:8081",
//		Node: n, StateMachine: sm, Logger: logger,
//	})
//	err = srv.Start()
//	...
//	srv.Shutdown(ctx) // then stop the node
//
// New binds the listeners, so a busy port fails before anything runs.
//
// # Consistency
//
// Any node serves any request. A write becomes a proposal (node.Propose):
// a follower's raft core forwards it to the leader, and the reply is the
// result the local state machine computed when it applied the entry. A read
// first obtains a read index (node.ReadIndex: the leader confirms its
// leadership with a heartbeat round that many reads share) and then reads
// the local store once it has applied that index, so reads are
// linearizable on every node. RESP connections that send READONLY, and
// HTTP reads with ?consistency=stale, skip the read index and may see
// stale data.
//
// When no leader is known, or a proposal or read index does not complete
// within Config.Timeout (2s by default), the request fails: RESP answers
// "-TRYAGAIN ..." and HTTP 503 with Retry-After, and the words (and the
// HTTP "outcome" field) say whether a write was not applied or may still
// be applied.
//
// # Exactly-once writes
//
// Every write carries a kv.RequestID. The server retries internally (after
// a leader change dropped the proposal, or while no leader is known) with
// the same bytes, and kv applies a request id at most once. Ids come from a
// pool of server-side sessions (random 64-bit client ids), one per write in
// flight, reused last-in first-out; Config.Sessions bounds them (default
// kv.MaxSessions/8, so that several nodes and HTTP clients fit in kv's
// replicated session table). An HTTP client that wants its own retries to
// be safe too sends its own id in the Raftkv-Request-Id header as
// "<client id>:<seq>", following kv.RequestID's rules.
//
// # RESP
//
// Commands, with Redis semantics (errors use Redis' texts): PING, ECHO,
// GET, SET key value [NX|XX] [GET], DEL, EXISTS, APPEND, INCR, INCRBY,
// DECR, DECRBY, MGET, MSET (atomic), STRLEN, DBSIZE, SCAN, CAS key expected
// new (1 if swapped, 0 if not; a missing key never matches), INFO [section]
// (server, clients, keyspace, raft), COMMAND [COUNT|INFO|LIST|DOCS],
// CONFIG GET, SELECT 0, CLIENT SETNAME|GETNAME|ID|SETINFO, HELLO [2] (RESP2
// only: HELLO 3 gets NOPROTO, and clients fall back), READONLY, READWRITE,
// QUIT. Keys never expire: SET's EX/PX options are refused.
//
// SCAN cursors are numbers that stand for a position in the ordered key
// space; a node remembers its last 4096 cursors, and an unknown or
// forgotten cursor is an error. MATCH supports '*', '?' and '\' escapes
// ('?' matches one UTF-8 character), not [...] classes; the pattern's
// literal prefix bounds the scan, so "user:*" only visits user keys.
// COUNT is a hint capped at kv.MaxScanLimit. TYPE string matches every key.
//
// Pipelines run in stages, so that they cost few raft rounds: consecutive
// reads share one read index, and consecutive writes to distinct keys are
// proposed together. A command always sees the effect of the commands
// sent before it on the same connection.
//
// # HTTP
//
//	GET    /v1/kv/<key>                 the raw value (application/octet-stream); 404 if missing
//	GET    /v1/kv/<key>?consistency=stale  the same, from the local store without a read index
//	PUT    /v1/kv/<key>                 body = raw value; {"written": true}
//	PUT    /v1/kv/<key>?nx | ?xx        only if missing | present; {"written": false} if not
//	PUT    /v1/kv/<key>?prev            also returns the previous value: {"written", "prev", "prev_found"}
//	PUT    /v1/kv/<key>?cas=<expected>  body = new value, written only if the value is <expected>; {"swapped": bool}
//	DELETE /v1/kv/<key>                 {"deleted": bool}
//	POST   /v1/kv/<key>/incr?by=N       adds N (default 1, may be negative); {"value": N}
//	POST   /v1/kv/<key>/append          body appended; {"length": N}
//	GET    /v1/kv/?prefix=p&limit=n&cursor=c  {"keys": [...], "cursor": "next page, empty when done"}
//	GET    /v1/status                   this node's raft state, and the leader's view of every member (match, lag)
//	GET    /v1/members                  the cluster's members: {"members": [{"name", "id", "addr"}]}
//	POST   /v1/leader/transfer?to=NAME  hands leadership to member NAME; {"leader": NAME} once it leads
//	GET    /healthz                     200 while the node runs
//	GET    /readyz                      200 once the node knows a leader and applied what it saw committed; else 503
//	GET    /metrics                     Prometheus metrics
//	GET    /                            a dashboard that polls /v1/status
//
// Keys are the rest of the path, percent-encoded where needed (a key may
// contain '/'; "%2F" works too). Keys and values in JSON replies are
// strings, or base64 with ?encoding=base64 (exact for any bytes). Errors
// are JSON, {"error": "...", "code": "..."}, with 400 for bad input, 404
// for a missing key, 409 for INCR of a non-integer, 413 above the limits,
// and 503 (with Retry-After and "outcome" for writes) without a leader.
//
// # Limits
//
// Keys are at most kv.MaxKeySize bytes (64 KiB) and values kv.MaxValueSize
// (8 MiB), for RESP and HTTP alike; an HTTP body above 8 MiB gets 413, and
// the request line and headers, ?cas=<expected> included, are bounded by
// net/http's default 1 MiB. A
// RESP command, all its arguments together, may be kv.MaxCommandSize
// (16 MiB) plus framing (MaxRESPRequest); a longer one gets a protocol
// error and its connection is closed. One command takes at most
// kv.MaxCommandKeys keys. Config.MaxClients bounds RESP connections
// and HTTP key-value requests in progress (default 10000; HTTP answers 503
// past it). Above a limit a request gets an error, never a crash.
//
// # Metrics
//
// /metrics serves a private registry (Config.Registry): raftkv_proposals_total,
// raftkv_proposal_retries_total, raftkv_read_index_requests_total,
// raftkv_applied_commands_total, raftkv_term, raftkv_commit_index,
// raftkv_applied_index, raftkv_apply_lag_entries, raftkv_is_leader,
// raftkv_has_leader, raftkv_keys, raftkv_sessions_in_use,
// raftkv_resp_connected_clients, raftkv_request_duration_seconds{api,command},
// raftkv_request_errors_total{api,command,kind}, the Go and process
// collectors, and the node's own counts (node.Stats), read at scrape time:
// raftkv_elections_total (elections this node started),
// raftkv_leader_changes_total, raftkv_wal_fsync_duration_seconds (a
// histogram), raftkv_wal_entries_persisted_total,
// raftkv_raft_proposals_dropped_total, raftkv_raft_messages_sent_total,
// raftkv_raft_messages_received_total and raftkv_raft_readies_total.
package server
