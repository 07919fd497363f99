package storage

import (
	"fmt"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage/wal"
)

// saveReq is one Save waiting for, or handled by, a group-commit leader.
// done and err are written by the leader before it releases wmu and read by
// the owner after acquiring it.
type saveReq struct {
	hs   raftpb.HardState
	ents []raftpb.Entry
	done bool
	err  error
}

// Save durably appends ents to the log and records hs (unless it is
// empty), then returns: one write and one fsync for the whole batch, shared
// with any Saves running concurrently. If ents[0].Index is not past the last
// entry, the entries from there on are replaced, as a leader overwriting a
// conflicting suffix requires. The Storage keeps the entries' Data without
// copying it: do not modify it afterwards.
//
// Concurrent Saves take effect in the order they queue up. A failed write
// or fsync leaves the Storage failed (ErrFailed); invalid arguments give
// ErrInvalid and change nothing.
func (s *Storage) Save(hs raftpb.HardState, ents []raftpb.Entry) error {
	req := &saveReq{hs: hs, ents: ents}
	s.mu.Lock()
	if err := s.usableLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	if hs.IsEmpty() && len(ents) == 0 {
		s.mu.Unlock()
		return nil
	}
	s.pending = append(s.pending, req)
	s.mu.Unlock()

	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !req.done {
		// Nobody wrote this request while we waited: lead, taking
		// everyone who queued up meanwhile along.
		s.mu.Lock()
		group := s.pending
		s.pending = nil
		s.mu.Unlock()
		s.commit(group)
	}
	return req.err
}

// view is the log as it will be once the requests of a group validated so
// far are applied: the stored log overlaid with their entries.
type view struct {
	x    *index
	hs   raftpb.HardState
	from uint64 // ents replace the stored log from this index on
	ents []raftpb.Entry
}

func (v *view) last() uint64 {
	if len(v.ents) > 0 {
		return v.from + uint64(len(v.ents)) - 1
	}
	return v.x.last()
}

// term returns the term of entry i, for base <= i <= last.
func (v *view) term(i uint64) uint64 {
	if len(v.ents) > 0 && i >= v.from {
		return v.ents[i-v.from].Term
	}
	return v.x.term(i)
}

// check validates one request against the view and, if it is valid,
// applies it to the view.
func (v *view) check(req *saveReq) error {
	if n := len(req.ents); n > 0 {
		first := req.ents[0].Index
		switch {
		case first <= v.x.base:
			return invalidEntries(req.ents, "the log starts after entry %d", v.x.base)
		case first > v.last()+1:
			return invalidEntries(req.ents, "the log ends at %d, leaving a gap", v.last())
		case first <= v.hs.Commit:
			return invalidEntries(req.ents, "would overwrite committed entry %d", v.hs.Commit)
		case req.ents[0].Term < v.term(first-1):
			return invalidEntries(req.ents, "term %d is lower than the term %d of entry %d", req.ents[0].Term, v.term(first-1), first-1)
		}
		for k := range req.ents {
			e := &req.ents[k]
			if k > 0 && (e.Index != req.ents[k-1].Index+1 || e.Term < req.ents[k-1].Term) {
				return invalidEntries(req.ents, "entry %d (term %d) does not follow entry %d (term %d)", e.Index, e.Term, req.ents[k-1].Index, req.ents[k-1].Term)
			}
			if len(e.Data) > maxEntryData {
				return invalidEntries(req.ents, "entry %d holds %d bytes, over the %d byte limit", e.Index, len(e.Data), maxEntryData)
			}
		}
	}
	last := v.last()
	if n := len(req.ents); n > 0 {
		last = req.ents[n-1].Index
	}
	if hs := req.hs; !hs.IsEmpty() {
		switch {
		case hs.Term < v.hs.Term:
			return fmt.Errorf("%w: hard state term %d is lower than the stored %d", ErrInvalid, hs.Term, v.hs.Term)
		case hs.Term == v.hs.Term && v.hs.Vote != raftpb.None && hs.Vote != v.hs.Vote:
			return fmt.Errorf("%w: hard state votes for %d in term %d, which already has a vote for %d", ErrInvalid, hs.Vote, hs.Term, v.hs.Vote)
		case hs.Commit > last:
			return fmt.Errorf("%w: hard state commits entry %d past the last entry %d", ErrInvalid, hs.Commit, last)
		}
		v.hs = hs
	}
	if len(req.ents) > 0 {
		first := req.ents[0].Index
		if len(v.ents) > 0 && first >= v.from {
			v.ents = append(v.ents[:first-v.from:first-v.from], req.ents...)
		} else {
			v.from, v.ents = first, req.ents
		}
	}
	return nil
}

// maxEntryData bounds an entry's Data so its record fits wal.MaxRecordSize
// (the encoding adds a version byte, three varints and a length).
const maxEntryData = wal.MaxRecordSize - 32

func invalidEntries(es []raftpb.Entry, format string, args ...any) error {
	return fmt.Errorf("%w: entries %d..%d: %s", ErrInvalid, es[0].Index, es[len(es)-1].Index, fmt.Sprintf(format, args...))
}

// commit writes a group of requests with one write and one fsync and
// applies them to the in-memory view. The caller holds wmu.
func (s *Storage) commit(group []*saveReq) {
	defer func() {
		for _, req := range group {
			req.done = true
		}
	}()
	if err := s.usable(); err != nil {
		for _, req := range group {
			req.err = err
		}
		return
	}
	v := view{x: &s.idx, hs: s.hs}
	valid := group[:0:0]
	s.batch.Reset()
	var offs []int64 // batch offsets of the entries of the valid requests, in order
	for _, req := range group {
		if req.err = v.check(req); req.err != nil {
			continue
		}
		valid = append(valid, req)
		for k := range req.ents {
			s.buf = req.ents[k].MarshalAppend(s.buf[:0])
			offs = append(offs, s.batch.Add(recEntry, s.buf))
		}
		if !req.hs.IsEmpty() {
			s.buf = req.hs.MarshalAppend(s.buf[:0])
			s.batch.Add(recHardState, s.buf)
		}
	}
	if len(valid) == 0 {
		return
	}
	pos, err := s.write(len(offs))
	if s.batch.Len() > 4<<20 {
		// Do not hold on to the memory of a huge batch.
		s.batch, s.buf = wal.Batch{}, nil
	}
	if err != nil {
		for _, req := range valid {
			req.err = err
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, req := range valid {
		for k := range req.ents {
			e := req.ents[k]
			if k == 0 {
				s.idx.truncate(e.Index)
				s.cache.truncate(e.Index)
			}
			s.idx.append(e.Term, pos.Seq, pos.Off+offs[0])
			offs = offs[1:]
			s.cache.append(e)
		}
		if !req.hs.IsEmpty() {
			s.hs = req.hs
		}
	}
}

// write writes s.batch, which holds entries log entries, and syncs it,
// starting a new segment first if the current one is full, and returns
// where the batch starts. Failures leave the Storage failed. The caller
// holds wmu.
func (s *Storage) write(entries int) (wal.Pos, error) {
	if s.batch.Len() > maxSegmentBytes-wal.FrameSize*16 {
		return wal.Pos{}, fmt.Errorf("%w: a batch of %d bytes does not fit in a segment", ErrInvalid, s.batch.Len())
	}
	if size := s.wal.Size(); size >= s.opts.SegmentSize || size+s.batch.Len() > maxSegmentBytes {
		if err := s.cut(); err != nil {
			return wal.Pos{}, err
		}
	}
	pos, err := s.wal.Write(&s.batch)
	if err == nil {
		err = s.sync(entries)
	}
	if err != nil {
		return wal.Pos{}, s.fail(err)
	}
	return pos, nil
}

// sync syncs the WAL and reports the fsync to Options.OnSync. The caller
// holds wmu.
func (s *Storage) sync(entries int) error {
	if s.opts.OnSync == nil {
		return s.wal.Sync()
	}
	start := time.Now()
	if err := s.wal.Sync(); err != nil {
		return err
	}
	s.opts.OnSync(time.Since(start), entries)
	return nil
}

// cut starts a new segment opening with the log's base and the hard
// state. The caller holds wmu (or is Open).
func (s *Storage) cut() error {
	var opening wal.Batch
	last := s.idx.last()
	s.buf = (&raftpb.SnapshotMetadata{Index: last, Term: s.idx.term(last)}).MarshalAppend(s.buf[:0])
	opening.Add(recBase, s.buf)
	if !s.hs.IsEmpty() {
		s.buf = s.hs.MarshalAppend(s.buf[:0])
		opening.Add(recHardState, s.buf)
	}
	if err := s.wal.Cut(&opening); err != nil {
		return s.fail(err)
	}
	return nil
}

// fail marks the Storage failed and returns the error to report.
func (s *Storage) fail(err error) error {
	s.mu.Lock()
	first := s.failed == nil
	if first {
		s.failed = err
	}
	s.mu.Unlock()
	if first {
		// Logged outside mu: a handler may write to a slow stream, and
		// readers take mu.
		s.opts.Logger.Error("storage: write failed; refusing further writes", "error", err.Error())
	}
	return fmt.Errorf("%w: %w", ErrFailed, err)
}

// baseOn makes the durable snapshot m the current one.
func (s *Storage) baseOn(m raftpb.SnapshotMetadata) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if !s.idx.has(m.Index, m.Term) {
		return s.applyReset(m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = m
	s.hs.Commit = max(s.hs.Commit, m.Index)
	return nil
}

// applyReset records durably that the log is replaced by snapshot m, then
// makes it so in memory. The caller holds wmu (or is Open).
func (s *Storage) applyReset(m raftpb.SnapshotMetadata) error {
	s.batch.Reset()
	s.buf = (&raftpb.SnapshotMetadata{Index: m.Index, Term: m.Term}).MarshalAppend(s.buf[:0])
	s.batch.Add(recReset, s.buf)
	if _, err := s.write(0); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idx.reset(m.Index, m.Term)
	s.cache.clear()
	s.snap = m
	s.hs.Commit = max(s.hs.Commit, m.Index)
	return nil
}

// Compact forgets the entries covered by the snapshot up to index (at most
// the snapshot's index), except the last Options.KeepEntries of them, and
// deletes the WAL segments that hold nothing newer. Compacting what is
// already compacted does nothing. The segments are deleted after wmu is
// released: deleting hundreds of MiB can take a while (hundreds of ms were
// measured), and Saves must not wait for it.
func (s *Storage) Compact(index uint64) error {
	c, old, err := s.compact(index)
	if err != nil {
		return err
	}
	if err := s.wal.RemoveDetached(old); err != nil {
		return fmt.Errorf("storage: compact to %d: %w", c, err)
	}
	return nil
}

// compact forgets the entries and detaches the segments Compact deletes.
func (s *Storage) compact(index uint64) (c uint64, old []uint64, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if err := s.usableLocked(); err != nil {
		s.mu.Unlock()
		return 0, nil, err
	}
	c = min(index, s.snap.Index)
	c -= min(c, s.opts.KeepEntries)
	if c > s.idx.base {
		s.idx.compact(c)
		s.cache.compact(c)
	}
	seq, ok := s.idx.firstSeq()
	s.mu.Unlock()
	if !ok {
		seq = s.wal.Seq()
	}
	return c, s.wal.DetachBefore(seq), nil
}
