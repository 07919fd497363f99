package raft

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// unstable holds what the core has accepted but the runtime has not yet
// reported durable: at most one snapshot and a run of entries after it.
//
// Invariant: entries[i].Index == offset+i. If snapshot is set,
// offset == snapshot.Metadata.Index+1.
type unstable struct {
	snapshot *raftpb.Snapshot
	entries  []raftpb.Entry
	offset   uint64
	// inProgress is the index of the first entry not yet handed out in a
	// Ready; snapshotInProgress likewise for the snapshot. Handed-out items
	// stay here until Advance says they are durable.
	inProgress         uint64
	snapshotInProgress bool
}

func (u *unstable) maybeLastIndex() (uint64, bool) {
	if n := len(u.entries); n > 0 {
		return u.offset + uint64(n) - 1, true
	}
	if u.snapshot != nil {
		return u.snapshot.Metadata.Index, true
	}
	return 0, false
}

func (u *unstable) maybeTerm(i uint64) (uint64, bool) {
	if i < u.offset {
		if u.snapshot != nil && u.snapshot.Metadata.Index == i {
			return u.snapshot.Metadata.Term, true
		}
		return 0, false
	}
	last, ok := u.maybeLastIndex()
	if !ok || i > last {
		return 0, false
	}
	return u.entries[i-u.offset].Term, true
}

// stableTo forgets entries up to i once they are durable, unless entry i
// was overwritten since it was handed out (then a later Advance covers it).
func (u *unstable) stableTo(i, t uint64) {
	gt, ok := u.maybeTerm(i)
	if !ok || gt != t || i < u.offset {
		return
	}
	n := int(i + 1 - u.offset)
	// Copy the remainder so the durable prefix's backing array can be freed.
	u.entries = append([]raftpb.Entry(nil), u.entries[n:]...)
	u.offset = i + 1
	u.inProgress = max(u.inProgress, u.offset)
}

func (u *unstable) stableSnapTo(i uint64) {
	if u.snapshot != nil && u.snapshot.Metadata.Index == i {
		u.snapshot = nil
		u.snapshotInProgress = false
	}
}

func (u *unstable) restore(s raftpb.Snapshot) {
	u.offset = s.Metadata.Index + 1
	u.inProgress = u.offset
	u.entries = nil
	u.snapshot = &s
	u.snapshotInProgress = false
}

// truncateAndAppend appends ents, first dropping any entries at or after
// ents[0].Index.
func (u *unstable) truncateAndAppend(ents []raftpb.Entry) {
	after := ents[0].Index
	switch {
	case after == u.offset+uint64(len(u.entries)):
		u.entries = append(u.entries, ents...)
	case after <= u.offset:
		// Replaces everything unstable, and shadows storage from after on.
		u.offset = after
		u.inProgress = after
		u.entries = append([]raftpb.Entry(nil), ents...)
	default:
		keep := u.entries[:after-u.offset]
		u.entries = append(append(make([]raftpb.Entry, 0, len(keep)+len(ents)), keep...), ents...)
		u.inProgress = min(u.inProgress, after)
	}
}

// raftLog is the core's view of the log: storage, then unstable on top.
//
// Invariants: applied <= applying <= committed <= lastIndex().
type raftLog struct {
	storage  Storage
	unstable unstable
	// committed is the highest index known committed.
	committed uint64
	// applying is the highest index handed out in CommittedEntries (or
	// restored from a snapshot); applied the highest one Advance confirmed.
	applying, applied uint64
	// maxApplyBytes bounds CommittedEntries per Ready.
	maxApplyBytes uint64
}

func newLog(storage Storage, maxApplyBytes uint64) (*raftLog, error) {
	first, err := storage.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("read first index: %w", err)
	}
	last, err := storage.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read last index: %w", err)
	}
	if first == 0 || last+1 < first {
		return nil, fmt.Errorf("storage holds an impossible range: first %d, last %d", first, last)
	}
	l := &raftLog{storage: storage, maxApplyBytes: maxApplyBytes}
	l.unstable.offset = last + 1
	l.unstable.inProgress = last + 1
	l.committed = first - 1
	l.applying = first - 1
	l.applied = first - 1
	return l, nil
}

func (l *raftLog) firstIndex() uint64 {
	if s := l.unstable.snapshot; s != nil {
		return s.Metadata.Index + 1
	}
	i, err := l.storage.FirstIndex()
	if err != nil {
		// Storage that cannot answer this cannot serve the core at all;
		// the value only bounds reads that will then fail themselves.
		return l.unstable.offset
	}
	return i
}

func (l *raftLog) lastIndex() uint64 {
	if i, ok := l.unstable.maybeLastIndex(); ok {
		return i
	}
	i, err := l.storage.LastIndex()
	if err != nil {
		return l.unstable.offset - 1
	}
	return i
}

// persistedIndex is the last index known durable and still in the log.
func (l *raftLog) persistedIndex() uint64 {
	if l.unstable.snapshot != nil {
		return 0
	}
	return l.unstable.offset - 1
}

// term returns the term of entry i, ErrCompacted below the first known
// term and ErrUnavailable past the end.
func (l *raftLog) term(i uint64) (uint64, error) {
	if t, ok := l.unstable.maybeTerm(i); ok {
		return t, nil
	}
	if i < l.firstIndex()-1 {
		return 0, ErrCompacted
	}
	if i > l.lastIndex() {
		return 0, ErrUnavailable
	}
	t, err := l.storage.Term(i)
	if err != nil {
		return 0, fmt.Errorf("read term of %d: %w", i, err)
	}
	return t, nil
}

// termOrZero is term for callers where a missing entry means "no match".
func (l *raftLog) termOrZero(i uint64) uint64 {
	t, err := l.term(i)
	if err != nil {
		return 0
	}
	return t
}

func (l *raftLog) lastTerm() uint64 { return l.termOrZero(l.lastIndex()) }

func (l *raftLog) matchTerm(i, t uint64) bool {
	lt, err := l.term(i)
	return err == nil && lt == t
}

// isUpToDate reports whether a log ending at (lasti, term) is at least as
// up to date as this one (§5.4.1).
func (l *raftLog) isUpToDate(lasti, term uint64) bool {
	lt := l.lastTerm()
	return term > lt || (term == lt && lasti >= l.lastIndex())
}

// findConflict returns the index of the first entry of ents that is not in
// the log (a different term, or past the end), or 0 if all are present.
func (l *raftLog) findConflict(ents []raftpb.Entry) uint64 {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// findConflictByTerm returns the largest index <= index whose term is <=
// term, with that term: no entry above it can match a log whose entry at
// index has the given term. It is the basis of fast backtracking.
func (l *raftLog) findConflictByTerm(index, term uint64) (uint64, uint64) {
	for ; index > 0; index-- {
		t, err := l.term(index)
		if err != nil {
			return index, 0
		}
		if t <= term {
			return index, t
		}
	}
	return 0, 0
}

// maybeAppend appends ents after (prev, prevTerm) if the log matches there,
// commits up to min(commit, last new index) and returns that last index. If
// skipTruncation is set it keeps conflicting entries and only appends past
// the end (a deliberately broken mode for tests).
func (l *raftLog) maybeAppend(prev, prevTerm, commit uint64, ents []raftpb.Entry, skipTruncation bool) (uint64, bool, error) {
	if !l.matchTerm(prev, prevTerm) {
		return 0, false, nil
	}
	lastNew := prev + uint64(len(ents))
	ci := l.findConflict(ents)
	switch {
	case ci == 0:
	case skipTruncation:
		if last := l.lastIndex(); lastNew > last {
			l.append(ents[last+1-(prev+1):])
		}
	case ci <= l.committed:
		return 0, false, fmt.Errorf("%w: entry %d conflicts with committed index %d", ErrInvalidMessage, ci, l.committed)
	default:
		l.append(ents[ci-(prev+1):])
	}
	l.commitTo(min(commit, lastNew))
	return lastNew, true, nil
}

func (l *raftLog) append(ents []raftpb.Entry) {
	if len(ents) > 0 {
		l.unstable.truncateAndAppend(ents)
	}
}

// commitTo raises committed; it never lowers it, and never past the log.
func (l *raftLog) commitTo(i uint64) {
	if i > l.committed && i <= l.lastIndex() {
		l.committed = i
	}
}

func (l *raftLog) restore(s raftpb.Snapshot) {
	l.committed = s.Metadata.Index
	l.applying = max(l.applying, s.Metadata.Index)
	l.unstable.restore(s)
}

func (l *raftLog) snapshot() (raftpb.Snapshot, error) {
	if s := l.unstable.snapshot; s != nil {
		return *s, nil
	}
	return l.storage.Snapshot()
}

// hasNextUnstableEnts reports whether entries wait to be handed out.
func (l *raftLog) hasNextUnstableEnts() bool {
	return l.unstable.inProgress < l.unstable.offset+uint64(len(l.unstable.entries))
}

func (l *raftLog) nextUnstableEnts() []raftpb.Entry {
	return l.unstable.entries[l.unstable.inProgress-l.unstable.offset:]
}

func (l *raftLog) nextUnstableSnapshot() *raftpb.Snapshot {
	if l.unstable.snapshotInProgress {
		return nil
	}
	return l.unstable.snapshot
}

func (l *raftLog) hasNextCommittedEnts() bool { return l.applying < l.committed }

// nextCommittedEnts returns committed entries not yet handed out, up to
// maxApplyBytes. Every entry up to lastIndex is durable by the time the
// runtime applies it: it was in this or an earlier Ready's Entries.
func (l *raftLog) nextCommittedEnts() ([]raftpb.Entry, error) {
	if l.applying >= l.committed {
		return nil, nil
	}
	return l.slice(l.applying+1, l.committed+1, l.maxApplyBytes)
}

// slice returns entries [lo, hi), at least one, no more than maxSize bytes
// beyond the first.
func (l *raftLog) slice(lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo < l.firstIndex() {
		return nil, ErrCompacted
	}
	if hi > l.lastIndex()+1 {
		return nil, fmt.Errorf("slice [%d, %d) beyond last index %d: %w", lo, hi, l.lastIndex(), ErrUnavailable)
	}
	var ents []raftpb.Entry
	if lo < l.unstable.offset {
		stored, err := l.storage.Entries(lo, min(hi, l.unstable.offset), maxSize)
		if err != nil {
			return nil, fmt.Errorf("read entries [%d, %d): %w", lo, min(hi, l.unstable.offset), err)
		}
		if len(stored) == 0 {
			return nil, fmt.Errorf("storage returned no entries for [%d, %d): %w", lo, hi, ErrUnavailable)
		}
		// Storage stopped early because of maxSize: done.
		if uint64(len(stored)) < min(hi, l.unstable.offset)-lo {
			return stored, nil
		}
		ents = stored
	}
	if hi > l.unstable.offset {
		from := max(lo, l.unstable.offset)
		us := l.unstable.entries[from-l.unstable.offset : hi-l.unstable.offset]
		if len(ents) > 0 {
			// Never append into storage's slice: it owns that array.
			ents = append(append(make([]raftpb.Entry, 0, len(ents)+len(us)), ents...), us...)
		} else {
			ents = us
		}
	}
	return limitSize(ents, maxSize), nil
}

// limitSize keeps the longest prefix of ents within maxSize bytes, but at
// least one entry.
func limitSize(ents []raftpb.Entry, maxSize uint64) []raftpb.Entry {
	if len(ents) == 0 {
		return ents
	}
	size := ents[0].Size()
	n := 1
	for ; n < len(ents); n++ {
		size += ents[n].Size()
		if size > maxSize {
			break
		}
	}
	return ents[:n]
}

// entriesFrom returns entries from i on, within maxSize.
func (l *raftLog) entriesFrom(i, maxSize uint64) ([]raftpb.Entry, error) {
	if i > l.lastIndex() {
		return nil, nil
	}
	return l.slice(i, l.lastIndex()+1, maxSize)
}

func isCompacted(err error) bool { return errors.Is(err, ErrCompacted) }
