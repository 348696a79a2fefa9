package agent

import (
	"context"
	"sync"

	"github.com/kplagent/agent/agent/source"
)

// emitSwitch is the emit of a source that a reload may hand from one flow
// to its successor without stopping it (a socket keeps its listener and
// its clients' connections, stdin its stream). Each record takes a read
// lock; pause takes the write lock, so once it returns no emit is in
// flight and none starts until resume points the switch at the new flow.
type emitSwitch struct {
	mu    sync.RWMutex
	emit  source.Emit
	batch source.EmitBatch // a BatchSource's batches; nil for others
}

func (s *emitSwitch) call(ctx context.Context, r source.Record) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.emit(ctx, r)
}

// callBatch is call for a BatchSource's batch: one read lock per batch.
func (s *emitSwitch) callBatch(ctx context.Context, rs []source.Record) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.batch(ctx, rs)
}

// pause waits for the emit in flight to return and holds the next ones,
// until ctx ends (an emit waiting for room in a full spool may take long):
// it reports whether it paused. A pause that gave up leaves the switch as
// it was once the emit in flight returns.
func (s *emitSwitch) pause(ctx context.Context) bool {
	got := make(chan struct{})
	go func() {
		s.mu.Lock()
		close(got)
	}()
	select {
	case <-got:
		return true
	case <-ctx.Done():
		go func() {
			<-got
			s.mu.Unlock()
		}()
		return false
	}
}

// resume lets emits through again, to emit (and batch) when not nil.
func (s *emitSwitch) resume(emit source.Emit, batch source.EmitBatch) {
	if emit != nil {
		s.emit = emit
	}
	if batch != nil {
		s.batch = batch
	}
	s.mu.Unlock()
}
