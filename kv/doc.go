// Package kv is the replicated key-value state machine: an ordered key
// space of byte strings with Redis string semantics, applied
// deterministically from the Raft log, with sessions that make writes
// exactly-once, and snapshots that stream the whole state.
//
// # Commands
//
// A Command is encoded with Command.MarshalAppend, proposed as a log
// entry's data, and applied on every replica with Store.Apply, which
// returns a Result. Reads (OpGet, OpExists, OpMGet, OpStrLen, OpScan,
// OpCount) do not need the log: after the consensus layer has confirmed a
// read index and the store has applied it, Store.Read answers locally.
//
// The semantics are Redis' for GET, SET (NX, XX, GET), DEL, EXISTS,
// APPEND, INCRBY (INCR, DECR and DECRBY are INCRBY with ±1 or a negated
// argument), MSET (atomic), MGET, STRLEN and DBSIZE, including the error
// texts (see Error). Two commands are ours:
//
//   - CAS key expected new: swaps in new only if the current value equals
//     expected byte for byte; a missing key never matches. With
//     ExpectAbsent it swaps only if the key is missing (create-if-absent).
//     The Result's Int is 1 if swapped, 0 if not.
//   - Scan walks the ordered key space: from a start key (inclusive),
//     restricted to a prefix, at most a limit of keys per page. The Result
//     holds the page and a Cursor, the key the next page starts from, empty
//     once done. Keys present for the whole scan are returned exactly once;
//     keys added or removed meanwhile may or may not be. A Redis SCAN's
//     numeric cursor has to be mapped onto it by the server.
//
// There are no expirations (TTL): applying must not read a clock.
//
// # Limits
//
// Keys are at most MaxKeySize bytes (64 KiB), values MaxValueSize (8 MiB;
// Redis allows 512 MiB, but every write here travels through the log to
// every replica), encoded commands MaxCommandSize (16 MiB) with at most
// MaxCommandKeys keys. Command.Validate, UnmarshalCommand and Apply all
// refuse larger ones with Redis-style errors (ErrKeyTooLarge,
// ErrValueTooLarge, ...); APPEND beyond MaxValueSize fails with
// ErrValueTooLarge and changes nothing.
//
// # Exactly-once writes
//
// Each write may carry a RequestID (ClientID, Seq); the store remembers,
// per client, the highest applied Seq and its Result, and answers a repeat
// from that memory instead of applying it again (see RequestID for the
// protocol clients follow). The table is bounded: at most MaxSessions
// clients and MaxSessionBytes of remembered results; beyond that the client
// whose last request was applied at the lowest log index is forgotten. This
// depends only on the log, so every replica forgets the same clients. A
// forgotten client's next request with Seq > 1 fails with
// ErrSessionExpired, whose outcome the client must treat as unknown before
// it continues under a new ClientID; only a first request (Seq 1) replayed
// after its session was evicted could be applied twice, which takes
// MaxSessions other clients writing in between.
//
// # Snapshots
//
// Store.Checkpoint freezes the state in O(1) (copy-on-write btrees) and
// Checkpoint.WriteTo streams it: applied index, keys in order, sessions,
// then a CRC-32C. Store.Restore verifies a stream completely before it
// replaces anything. Two replicas with the same history write
// byte-identical snapshots.
//
// # Concurrency
//
// A Store is safe for concurrent use. Apply and Restore are meant to be
// called by the one goroutine that applies the log; Read, AppliedIndex,
// Checkpoint and Snapshot may be called from any goroutine meanwhile. A
// read-write mutex orders them; Apply holds it for one command, Checkpoint
// for a clone, and no method holds it during I/O.
package kv
