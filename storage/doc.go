// Package storage is the durable home of a raft node's log: a write-ahead
// log (package wal) holding the hard state and entries, snapshot files
// (package snap), and the in-memory view the raft core reads through the
// raft.Storage interface.
//
// # Layout
//
// A data directory holds IDENTITY (the node and cluster ids, written once),
// LOCK (held while the directory is open, so two processes cannot share
// it), wal/ (segments of checksummed records) and snap/ (snapshot files).
// The WAL records are, besides the WAL's own bookkeeping:
//
//	entry       a raftpb.Entry; an entry at an index the log already has
//	            replaces it and everything after (a leader overwriting a
//	            conflicting suffix), so replay yields exactly the last log
//	hard state  a raftpb.HardState
//	base        opens each segment: the index and term the log ends at,
//	            and with the current hard state after it, everything a
//	            replay starting at this segment needs
//	reset       the log was replaced by a snapshot at this index and term
//
// # Writes
//
// Save writes a batch's entries and then its hard state (so a torn batch
// can never leave a commit index past the entries) with one write and one
// fsync, however many entries it holds. Concurrent Saves share a write and
// an fsync: whoever finds the log idle writes everything queued meanwhile
// (group commit). A Save is durable when it returns; nothing is ever
// fsynced per entry. Options.OnSync hears of every such fsync (its duration
// and the entries it made durable), so the caller can keep statistics
// without this package choosing a metrics library.
//
// # Recovery rule
//
// Open verifies every checksum of every segment and every snapshot file it
// uses. A torn record at the very tail of the last segment (cut short,
// zero-filled or failing its checksum, with no intact record anywhere
// after it) is what a crash mid-write leaves: it is cut off, and a warning
// names the file and offset. Anything else is refused with an error wrapping
// ErrCorrupt that names the file, the offset and what is wrong: damage
// anywhere else, a damaged record followed by an intact one, a missing
// segment (a gap in sequence numbers, or a sealed last segment), entries
// that skip an index, or a log that does not reach back to the newest valid
// snapshot. Data that may have been acknowledged is never dropped silently.
// The details are in package wal.
//
// Damaged snapshot files are skipped with a warning (and renamed *.broken):
// the newest valid one is used, and Open still refuses if the log does not
// continue from it.
//
// # Snapshots and compaction
//
// A snapshot's data is streamed, never held whole in memory:
// CreateSnapshot writes it to a temporary file in snap/, Stage completes and
// fsyncs that file, and SaveSnapshot adopts it: it renames the file into
// place, fsyncs the directory, and bases the log on it. A staged file is
// never read by recovery (a restart removes it), so a node that restarts
// while receiving a snapshot has its previous state, never a mix.
// OpenSnapshot reads a snapshot's data back, verifying it as it goes.
//
// SaveSnapshot accepts snapshots made locally and ones received from a
// leader. If the log holds the snapshot's last entry (same index and term)
// the log is kept as it is, since by the Log Matching Property it agrees
// with the snapshot; otherwise the log is replaced by the snapshot.
// Compact then forgets entries the snapshot covers, keeping
// Options.KeepEntries of them for followers that lag a little, and deletes
// the segments that hold nothing newer.
//
// # Memory
//
// Entries are kept in memory only in a tail cache of Options.CacheBytes;
// older ones are read back from disk. Besides the cache the log costs about
// four bytes per entry (its position on disk).
//
// # Concurrency
//
// A Storage is safe for concurrent use. Reads never wait for disk writes:
// they see the log as of the last completed Save.
package storage
