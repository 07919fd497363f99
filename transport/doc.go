// Package transport carries raft messages between the nodes of one cluster
// over long-lived TCP (optionally TLS) streams.
//
// Each node dials one outbound stream to every peer and only writes on it;
// the peer's messages to us arrive on the stream it dials to us. A stream
// starts with a fixed-size handshake from the dialer:
//
//	magic "RKVT" | version (1 byte) | kind (1 byte) | cluster id | sender id | receiver id
//
// with the three ids as 8-byte big-endian integers. The kind says whether
// the stream carries messages, one snapshot, or one query (a request and
// its answer, for nodes that are not peers yet: see query.go). The acceptor answers
// with "RKVT" | version | status (1 byte); any status but OK names the
// reason (wrong cluster, unknown sender, ...) and the acceptor closes the
// connection. After an OK the dialer sends frames, each a 4-byte big-endian
// body length followed by one message in the raftpb encoding. A receiver
// refuses a frame above its size limit before allocating for it, and checks
// every message (addressed to it, sent by the handshake's sender, not a
// local-only type) before handing it to the node.
//
// Sending never blocks: every peer has a bounded queue drained by its own
// writer goroutine, which batches whatever is queued into one write.
// Messages that cannot be queued or sent are dropped and the peer reported
// unreachable, which is all Raft needs: it retransmits on its own schedule.
//
// Snapshots do not travel in frames. A MsgSnap makes the transport open the
// snapshot's file through Config.Snapshots and stream it on a connection of
// its own, in checksummed chunks with a checksum of the whole (see
// snapshot.go), one transfer per peer at a time, in bounded memory on both
// ends whatever the snapshot's size; heartbeats and appends meanwhile keep
// flowing on the message streams. The receiver writes the data through
// Config.Snapshots, verifies it, and only then hands the MsgSnap (metadata
// only) to its node and answers; the sender reports the outcome with
// Handler.ReportSnapshot, and the core starts over after a failure.
package transport
