package node

import "time"

// tickClock counts raft ticks by the monotonic clock rather than by the
// ticker's signals, which a busy receiver loses. Not safe for concurrent
// use: the loop owns it.
type tickClock struct {
	interval time.Duration
	// max bounds the ticks one call hands out: beyond an election timeout
	// every lease and timer the ticks measure has run out anyway, and a
	// long pause must not turn into a flood of heartbeats.
	max int
	// last is when the latest tick counted fell due.
	last time.Time
}

// due returns how many ticks fell due since the previous call (at most
// max) and counts them as given.
func (k *tickClock) due(now time.Time) int {
	n := now.Sub(k.last) / k.interval
	if n <= 0 {
		return 0
	}
	k.last = k.last.Add(n * k.interval)
	return int(min(n, time.Duration(k.max)))
}
