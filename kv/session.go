package kv

import (
	"cmp"

	"github.com/google/btree"
)

// Bounds of the session table. Like the size limits they define the state
// machine: every replica must use the same values, or their tables (and so
// their answers to retries) would diverge.
const (
	// MaxSessions is how many clients the store remembers. A server that
	// uses one ClientID per in-flight request slot needs one per slot on
	// every node, plus churn: 16384 leaves room for thousands of
	// concurrent clients.
	MaxSessions = 1 << 14
	// MaxSessionBytes bounds the memory of remembered results (64 MiB):
	// a SET with GetOld remembers the old value, up to MaxValueSize.
	MaxSessionBytes = 64 << 20
	// sessionOverhead is what a session counts against MaxSessionBytes
	// besides the bytes of its result.
	sessionOverhead = 64
)

// session is what the store remembers of one client: its highest applied
// Seq, that request's result, and the log index that last touched it,
// which orders eviction. A session is never modified once in the table
// (updates insert a new one), so Checkpoint clones can share it.
type session struct {
	client uint64
	seq    uint64
	last   uint64
	result Result
}

func (s *session) size() int { return sessionOverhead + len(s.result.Value.Data) }

// lruKey orders sessions by the log index that last touched them; the
// client id only breaks ties, which genuine histories never produce since
// one index touches at most one session.
type lruKey struct{ last, client uint64 }

// sessionLimits are the table's bounds: MaxSessions and MaxSessionBytes,
// smaller in tests so that eviction is exercised.
type sessionLimits struct {
	count, bytes int
}

// sessionTable remembers recent clients. It is deterministic: what it holds
// depends only on the sequence of applied entries. It uses copy-on-write
// btrees so that a Checkpoint can clone it in O(1).
type sessionTable struct {
	limits   sessionLimits
	byClient *btree.BTreeG[*session]
	lru      *btree.BTreeG[lruKey]
	bytes    int // sum of size() over byClient
	// probe is the search key of lookups, kept here so they do not allocate.
	probe session
}

func newSessionTable(limits sessionLimits) sessionTable {
	return sessionTable{
		limits:   limits,
		byClient: btree.NewG(16, func(a, b *session) bool { return a.client < b.client }),
		lru: btree.NewG(16, func(a, b lruKey) bool {
			return cmp.Or(cmp.Compare(a.last, b.last), cmp.Compare(a.client, b.client)) < 0
		}),
	}
}

func (t *sessionTable) get(client uint64) (*session, bool) {
	t.probe.client = client
	return t.byClient.Get(&t.probe)
}

// put inserts or replaces s, then evicts the least recently touched
// sessions, never s itself, until the table is within its limits.
func (t *sessionTable) put(s *session) {
	if old, ok := t.byClient.ReplaceOrInsert(s); ok {
		t.lru.Delete(lruKey{old.last, old.client})
		t.bytes -= old.size()
	}
	t.lru.ReplaceOrInsert(lruKey{s.last, s.client})
	t.bytes += s.size()
	for t.byClient.Len() > 1 && (t.byClient.Len() > t.limits.count || t.bytes > t.limits.bytes) {
		k, _ := t.lru.DeleteMin()
		t.probe.client = k.client
		old, _ := t.byClient.Delete(&t.probe)
		t.bytes -= old.size()
	}
}
