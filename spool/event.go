package spool

import "sync"

// event is a broadcast condition that works with select, so waiters can also
// watch a context. A waiter takes the channel, checks its condition, and only
// then blocks on the channel: a broadcast between the two closes the channel
// it holds, so no wake-up is lost. Broadcasting with no waiter costs a lock.
type event struct {
	mu sync.Mutex
	ch chan struct{}
}

func (e *event) wait() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch == nil {
		e.ch = make(chan struct{})
	}
	return e.ch
}

func (e *event) broadcast() {
	e.mu.Lock()
	if e.ch != nil {
		close(e.ch)
		e.ch = nil
	}
	e.mu.Unlock()
}
