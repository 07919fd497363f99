package transport

import (
	"log/slog"
	"sync"
)

// reporter hands unreachable and snapshot reports to the Handler from one
// goroutine. Send and the writers only record a report and move on, so the
// Handler is never called from inside Send (where it could deadlock a node
// loop that both sends and consumes reports) nor blocks a writer.
// Reports for one peer coalesce: the core needs to know that a peer is
// unreachable, not how many times.
type reporter struct {
	h    Handler
	wake chan struct{} // size 1: one pending wake-up covers any number of reports

	mu          sync.Mutex // guards unreachable and snapshots
	unreachable map[uint64]struct{}
	snapshots   map[uint64]bool // latest outcome per peer; the core has one snapshot in flight per peer
}

func newReporter(h Handler) *reporter {
	return &reporter{
		h:           h,
		wake:        make(chan struct{}, 1),
		unreachable: make(map[uint64]struct{}),
		snapshots:   make(map[uint64]bool),
	}
}

func (r *reporter) reportUnreachable(id uint64) {
	r.mu.Lock()
	r.unreachable[id] = struct{}{}
	r.mu.Unlock()
	r.notify()
}

func (r *reporter) reportSnapshot(id uint64, ok bool) {
	r.mu.Lock()
	r.snapshots[id] = ok
	r.mu.Unlock()
	r.notify()
}

func (r *reporter) notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run delivers reports until done is closed; reports still pending then
// are dropped, because the Handler must not be called after Close.
func (r *reporter) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-r.wake:
		}
		r.mu.Lock()
		unreachable, snapshots := r.unreachable, r.snapshots
		r.unreachable, r.snapshots = make(map[uint64]struct{}), make(map[uint64]bool)
		r.mu.Unlock()
		for id := range unreachable {
			r.h.ReportUnreachable(id)
		}
		for id, ok := range snapshots {
			r.h.ReportSnapshot(id, ok)
		}
	}
}

// maxLogKeys bounds the memory logOnce spends remembering what it logged;
// past it, new problems are logged at debug level only. Without a bound, a
// scan from many addresses would grow the set without limit.
const maxLogKeys = 1024

type logKey struct {
	who   string // "peer 3" or a remote host
	cause string
}

// logOnce logs each distinct problem with each peer or remote host once at
// warning level, and repeats at debug level, so that a peer that keeps
// failing the same way does not flood the log. A peer's slate is wiped when
// it connects successfully: the same failure after a recovery is news.
type logOnce struct {
	log *slog.Logger

	mu   sync.Mutex // guards seen
	seen map[logKey]struct{}
}

func (l *logOnce) warn(who, cause, msg string, args ...any) {
	k := logKey{who: who, cause: cause}
	l.mu.Lock()
	_, dup := l.seen[k]
	first := !dup && len(l.seen) < maxLogKeys
	if first {
		l.seen[k] = struct{}{}
	}
	l.mu.Unlock()
	args = append(args, slog.String("cause", cause))
	if first {
		l.log.Warn(msg, args...)
	} else {
		l.log.Debug(msg, args...)
	}
}

func (l *logOnce) reset(who string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.seen {
		if k.who == who {
			delete(l.seen, k)
		}
	}
}
