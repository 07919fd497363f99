package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"

	"github.com/raftkv/raftkv/raft/raftpb"
)

// applyBatch is work for the apply goroutine, already durable: a snapshot
// from the leader to install (if not empty), then committed entries.
type applyBatch struct {
	snap raftpb.Snapshot
	ents []raftpb.Entry
}

// applier is the apply goroutine's own state.
type applier struct {
	applied     uint64 // last index applied to the state machine
	appliedTerm uint64 // its term
	snapIndex   uint64 // index of the latest snapshot taken or installed
	// conf and dir are the configuration and member directory as of
	// applied, for snapshots.
	conf raftpb.ConfState
	dir  directory
	// replayedTo is the commit index the node started with: entries up to
	// it were applied before, by an earlier run.
	replayedTo uint64
}

func (a *applier) installed(md raftpb.SnapshotMetadata) {
	a.applied, a.appliedTerm, a.snapIndex = md.Index, md.Term, md.Index
	a.conf = md.ConfState
}

// runApply is the apply goroutine. After the loop ends it applies what the
// loop already queued, so that a graceful stop loses no applied-but-unseen
// work; Close (abortc) ends it at once.
func (n *Node) runApply(a *applier) {
	defer close(n.applyDone)
	for {
		var b applyBatch
		select {
		case b = <-n.applyc:
		case <-n.loopDone:
			// The loop queues nothing more: take what it queued, if any.
			select {
			case b = <-n.applyc:
			default:
				return
			}
		case <-n.abortc:
			return
		}
		if err := n.apply(a, b); err != nil {
			n.fail(err)
			return
		}
	}
}

func (n *Node) apply(a *applier, b applyBatch) error {
	if md := b.snap.Metadata; !b.snap.IsEmpty() && md.Index > a.applied {
		if err := n.restoreSnapshot(a, md); err != nil {
			if errors.Is(err, fs.ErrNotExist) && n.snapshotReplaced(md) {
				// A newer snapshot from the leader replaced this one
				// before we got to it. Its batch follows this one, and
				// it covers every entry here.
				n.log.Info("skipped a snapshot replaced before it was installed", "index", md.Index, "term", md.Term)
				return nil
			}
			return fmt.Errorf("install snapshot at %d from the leader: %w", md.Index, err)
		}
		n.log.Info("installed snapshot from the leader", "index", md.Index, "term", md.Term)
		n.pushNote(applyNote{kind: noteSnapshot, index: md.Index, dir: a.dir})
	}
	from := a.applied
	for i := range b.ents {
		e := &b.ents[i]
		if e.Index <= a.applied {
			continue
		}
		if e.Index != a.applied+1 {
			return fmt.Errorf("apply entry %d: the last applied entry is %d", e.Index, a.applied)
		}
		switch {
		case e.Type == raftpb.EntryNormal && len(e.Data) > 0:
			n.applyCommand(e)
		case e.Type == raftpb.EntryConfChange:
			n.applyConfChange(a, e)
		}
		a.applied, a.appliedTerm = e.Index, e.Term
	}
	if a.applied != from || !b.snap.IsEmpty() {
		// The core gates membership changes on what is really applied.
		n.pushNote(applyNote{kind: noteApplied, index: a.applied})
	}
	n.applied.Store(a.applied)
	n.appliedMoved.Broadcast()
	n.maybeSnapshot(a)
	return nil
}

// applyCommand strips the proposal id, applies the command and resolves the
// proposer's future if it waits on this node.
func (n *Node) applyCommand(e *raftpb.Entry) {
	if len(e.Data) < idSize {
		// Every proposal goes through Propose, which adds the id; an entry
		// without one is skipped the same way on every node.
		n.log.Warn("skipping entry without a proposal id", "index", e.Index, "bytes", len(e.Data))
		return
	}
	id := binary.BigEndian.Uint64(e.Data)
	result := n.cfg.StateMachine.Apply(e.Index, e.Data[idSize:])
	n.pending.proposals.resolve(id, result)
}

// snapshotReplaced reports whether the stored snapshot is newer than md.
func (n *Node) snapshotReplaced(md raftpb.SnapshotMetadata) bool {
	cur, err := n.store.Snapshot()
	return err == nil && cur.Metadata.Index > md.Index
}
