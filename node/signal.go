package node

import "sync"

// signal lets any number of goroutines wait for the next change of a value
// that another goroutine publishes, without polling.
type signal struct {
	mu sync.Mutex    // guards ch
	ch chan struct{} // closed and dropped on Broadcast; made lazily
}

// C returns a channel closed by the next Broadcast. Read the value after
// calling C, so that a change between the two is not missed.
func (s *signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Broadcast wakes every goroutine waiting on a channel from C.
func (s *signal) Broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
