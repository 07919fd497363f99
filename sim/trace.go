package sim

import (
	"fmt"
	"strings"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/raft/readydrive"
)

// trace keeps the lines of the last few steps in a ring. Recording must be
// cheap because it happens millions of times per test run and is read only
// when a run fails, so lines hold values and are formatted only then.
type trace struct {
	keep  uint64 // steps to keep
	lines []traceLine
	head  int // index of the oldest line
	n     int
}

type lineKind uint8

const (
	lineNote    lineKind = iota // note says it all
	lineTick                    // the node's clock ticked
	lineDeliver                 // msg arrived at the node (note: what Step returned)
	lineSend                    // the node sent msg (note: its fate)
	lineReady                   // the node handled a Ready
)

type traceLine struct {
	step uint64
	at   int64
	kind lineKind
	node uint64
	msg  raftpb.Message
	rd   readySummary
	note string
}

// readySummary is the part of a Ready worth printing.
type readySummary struct {
	hs                    raftpb.HardState
	entFirst, entLast     uint64
	snap                  uint64
	early, after          int
	applyFirst, applyLast uint64
	reads                 int
	sendLate              bool             // Messages waited for the persist step
	sync                  bool             // the runtime did it all in one step
	crash                 readydrive.Phase // a crash strikes before it (Idle: none)
}

func summarize(rd *raft.Ready, sendLate, sync bool, crash readydrive.Phase) readySummary {
	s := readySummary{hs: rd.HardState, snap: rd.Snapshot.Metadata.Index, early: len(rd.Messages),
		after: len(rd.MessagesAfterPersist), reads: len(rd.ReadStates), sendLate: sendLate, sync: sync, crash: crash}
	if n := len(rd.Entries); n > 0 {
		s.entFirst, s.entLast = rd.Entries[0].Index, rd.Entries[n-1].Index
	}
	if n := len(rd.CommittedEntries); n > 0 {
		s.applyFirst, s.applyLast = rd.CommittedEntries[0].Index, rd.CommittedEntries[n-1].Index
	}
	return s
}

func newTrace(keepSteps int) *trace {
	// Most steps make a handful of lines; a leader's Ready makes one per
	// message, so leave room for bursts.
	return &trace{keep: uint64(keepSteps), lines: make([]traceLine, 16*keepSteps)}
}

func (t *trace) add(l traceLine) {
	i := (t.head + t.n) % len(t.lines)
	t.lines[i] = l
	if t.n < len(t.lines) {
		t.n++
	} else {
		t.head = (t.head + 1) % len(t.lines)
	}
}

// String formats the lines of the last keep steps.
func (t *trace) String() string {
	if t.n == 0 {
		return "(no steps)\n"
	}
	lastStep := t.lines[(t.head+t.n-1)%len(t.lines)].step
	var sb strings.Builder
	sb.WriteString("  step    tick  node  what\n")
	for j := range t.n {
		l := &t.lines[(t.head+j)%len(t.lines)]
		if l.step+t.keep <= lastStep {
			continue
		}
		fmt.Fprintf(&sb, "%6d %7.2f  ", l.step, float64(l.at)/TickInterval)
		if l.node != 0 {
			fmt.Fprintf(&sb, "n%-3d  ", l.node)
		} else {
			sb.WriteString("      ")
		}
		sb.WriteString(l.String())
		sb.WriteByte('\n')
	}
	return sb.String()
}

func (l *traceLine) String() string {
	switch l.kind {
	case lineTick:
		return "tick"
	case lineDeliver:
		s := "<- " + l.msg.String() + entryRange(l.msg.Entries)
		if l.note != "" {
			s += "  (" + l.note + ")"
		}
		return s
	case lineSend:
		s := "   -> " + l.msg.String() + entryRange(l.msg.Entries)
		if l.note != "" {
			s += "  [" + l.note + "]"
		}
		return s
	case lineReady:
		return l.rd.String()
	}
	return l.note
}

func entryRange(ents []raftpb.Entry) string {
	if len(ents) == 0 {
		return ""
	}
	f, l := ents[0], ents[len(ents)-1]
	return fmt.Sprintf(" ents=%d/%d..%d/%d", f.Index, f.Term, l.Index, l.Term)
}

func (s readySummary) String() string {
	var parts []string
	if s.snap != 0 {
		parts = append(parts, fmt.Sprintf("snapshot@%d", s.snap))
	}
	if s.entFirst != 0 {
		parts = append(parts, fmt.Sprintf("persist %d..%d", s.entFirst, s.entLast))
	}
	if !s.hs.IsEmpty() {
		parts = append(parts, fmt.Sprintf("hard state t%d vote=%d commit=%d", s.hs.Term, s.hs.Vote, s.hs.Commit))
	}
	if s.early > 0 {
		when := "before persisting"
		if s.sendLate {
			when = "after persisting"
		}
		parts = append(parts, fmt.Sprintf("send %d %s", s.early, when))
	}
	if s.after > 0 {
		parts = append(parts, fmt.Sprintf("send %d after persist", s.after))
	}
	if s.applyFirst != 0 {
		parts = append(parts, fmt.Sprintf("apply %d..%d", s.applyFirst, s.applyLast))
	}
	if s.reads > 0 {
		parts = append(parts, fmt.Sprintf("%d read states", s.reads))
	}
	if s.crash != readydrive.Idle {
		parts = append(parts, "CRASH before "+s.crash.String())
	}
	how := "ready (async): "
	if s.sync {
		how = "ready: "
	}
	return how + strings.Join(parts, "; ")
}
