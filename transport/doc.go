// Package transport carries raft messages between the nodes of one cluster
// over long-lived TCP (optionally TLS) streams.
//
// Each node dials one outbound stream to every peer and only writes on it;
// the peer's messages to us arrive on the stream it dials to us. A stream
// starts with a fixed-size handshake from the dialer:
//
//	magic "RKVT" | version (1 byte) | cluster id | sender id | receiver id
//
// with the three ids as 8-byte big-endian integers. The acceptor answers
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
package transport
