package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

// The direct path. Writing every aggregate to the spool and reading it back
// makes the disk the ceiling and costs CPU for nothing while the destination
// keeps up. For flows whose sources can replay (files: their checkpoints
// move only past records that are delivered or durable), an aggregate may go
// straight to a sender in memory. If the destination does not take it at the
// first attempt it is written to the spool and follows the ordinary path.
// When the direct queue is full, the flow waits for room while the
// destination is healthy (slowing a replayable source costs nothing; a
// spill costs an fsync and a read-back) and spills once it is not (see
// offer and docs/design/001-direct-path.md). A crash loses nothing: a record that was only in
// memory has not been checkpointed and is read again from its file.

// ticket follows one aggregate sent directly until it is delivered (or
// dead-lettered) or spilled to the spool.
type ticket struct {
	// state: 0 in flight; ticketDone; or a spool ID (> 0 as int64) once spilled.
	state atomic.Int64
}

const ticketDone = -1

func (t *ticket) markDone() { t.state.Store(ticketDone) }

func (t *ticket) spilled(id spool.ID) { t.state.Store(int64(id)) }

// durable reports whether the aggregate no longer needs its source: it was
// delivered, or spilled and the spool synced past it.
func (t *ticket) durable(durable spool.ID) bool {
	v := t.state.Load()
	return v == ticketDone || (v > 0 && spool.ID(v) <= durable)
}

// directItem is one aggregate in its spool-entry encoding, in memory.
type directItem struct {
	entry    []byte
	builtFor *aggregate.Shard // the aggregate's BuiltFor, which the entry does not carry
	ticket   *ticket
}

// directQueue is the bounded hand-off between a flow and its sender.
type directQueue struct {
	ch   chan *directItem
	pool sync.Pool

	// The destination's health as the sender sees it, which decides what
	// a flow does with an aggregate when the queue is full (see offer):
	// healthy, it waits for room; not, it spills to the spool.
	bad  atomic.Bool
	hmu  sync.Mutex
	wake chan struct{} // closed when bad turns true (replaced when it turns false); guarded by hmu
	// fullWait is directFullWait (shorter in tests).
	fullWait time.Duration
	// progress counts the Sends that succeeded: a wait goes on past
	// fullWait while it moves.
	progress atomic.Uint64
}

// directQueueLen bounds the aggregates waiting in memory: 64 aggregates of
// the default 50 KiB are about 3 MiB, enough to keep the senders busy
// between two batches.
const directQueueLen = 64

// directFullWait bounds a flow's wait for room in a full direct queue while
// the destination is healthy. A queue that stays full that long with no
// Send succeeding meanwhile means the destination makes no progress (every
// send slot is stuck in a Send): the path turns unhealthy and aggregates
// spill to the spool at once until a send succeeds again.
const directFullWait = 2 * time.Second

func newDirectQueue() *directQueue {
	return &directQueue{ch: make(chan *directItem, directQueueLen), wake: make(chan struct{}), fullWait: directFullWait}
}

// healthy returns whether a flow may wait for room, and the channel closed
// when that stops being so.
func (q *directQueue) healthy() (<-chan struct{}, bool) {
	if q.bad.Load() {
		return nil, false
	}
	q.hmu.Lock()
	defer q.hmu.Unlock()
	return q.wake, !q.bad.Load()
}

// setBad notes that the destination is not keeping up (a send failed or
// was throttled, the queue stayed full for directFullWait) or that the
// sender stopped: flows waiting for room stop waiting and spill.
func (q *directQueue) setBad() {
	if q.bad.Load() {
		return
	}
	q.hmu.Lock()
	defer q.hmu.Unlock()
	if !q.bad.Load() {
		q.bad.Store(true)
		close(q.wake)
	}
}

// setGood notes that a send succeeded.
func (q *directQueue) setGood() {
	if !q.bad.Load() {
		return
	}
	q.hmu.Lock()
	defer q.hmu.Unlock()
	if q.bad.Load() {
		q.wake = make(chan struct{})
		q.bad.Store(false)
	}
}

// note updates the health after a Send that returned err. A permanent
// rejection says nothing of the destination's health.
func (q *directQueue) note(err error) {
	switch {
	case err == nil:
		q.progress.Add(1)
		q.setGood()
	case !outputs.IsPermanent(err):
		q.setBad()
	}
}

// offer queues a copy of a's entry encoding. When the queue is full and the
// destination healthy, the flow waits for room (its sources replay, so
// slowing them down loses nothing and costs no spool write and read-back),
// until the destination turns unhealthy, the sender stops, directFullWait
// passes or ctx ends. Then, if wait > 0 (the spool had no room), it waits up
// to wait more. It returns nil when the queue stayed full (the caller spools
// the aggregate), and how long it waited.
func (q *directQueue) offer(ctx context.Context, a *aggregate.Aggregate, wait time.Duration) (*ticket, time.Duration) {
	it, _ := q.pool.Get().(*directItem)
	if it == nil {
		it = &directItem{}
	}
	it.entry = a.AppendEntry(it.entry[:0])
	it.builtFor = a.BuiltFor
	tk := &ticket{}
	it.ticket = tk
	select {
	case q.ch <- it:
		return tk, 0 // it belongs to the sender now
	default:
	}
	start := time.Now()
	if wake, ok := q.healthy(); ok && ctx.Err() == nil {
		t := time.NewTimer(q.fullWait)
		seen := q.progress.Load()
	wait:
		for {
			select {
			case q.ch <- it:
				t.Stop()
				return tk, time.Since(start)
			case <-t.C:
				if p := q.progress.Load(); p != seen {
					// Sends succeed, only slowly (a rate limiter holds
					// them): still no reason to spill.
					seen = p
					t.Reset(q.fullWait)
					continue
				}
				q.setBad() // no room and no Send succeeded for so long: no progress
				break wait
			case <-wake:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		t.Stop()
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case q.ch <- it:
			return tk, time.Since(start)
		case <-t.C:
		case <-ctx.Done():
		}
	}
	q.put(it)
	return nil, time.Since(start)
}

func (q *directQueue) put(it *directItem) {
	it.ticket = nil
	if cap(it.entry) > 4<<20 {
		it.entry = nil // do not pool a rare huge buffer
	}
	q.pool.Put(it)
}

// directWorker sends batches from the direct queue.
func (s *sender) directWorker(ctx context.Context) error {
	// A stopped worker sends nothing: flows waiting for room spill.
	defer s.direct.setBad()
	var b batch
	maxBytes := int(s.cfg.BatchMaxBytes)
	for {
		b.ids, b.items, b.aggs, b.spill, b.born = b.ids[:0], b.items[:0], b.aggs[:0], b.spill[:0], time.Time{}
		size := 0
		select {
		case <-ctx.Done():
			return nil
		case it := <-s.direct.ch:
			size += len(it.entry)
			s.takeDirect(&b, it)
		}
	more:
		for len(b.items) < s.cfg.BatchMaxRecords && size < maxBytes {
			select {
			case it := <-s.direct.ch:
				size += len(it.entry)
				s.takeDirect(&b, it)
			default:
				break more
			}
		}
		if s.draining.Load() {
			s.hold(&b, allIndexes(len(b.items))) // for the next sender (adoptHeld)
			return nil
		}
		if len(b.items) > 0 {
			s.sendDirect(ctx, &b)
		}
	}
}

// sendDirect delivers a direct batch at the first attempt or spills what
// was not delivered to the spool. What the spool cannot take either (full
// with when_full: block, disk under min_free_bytes, an I/O error) stays in
// memory and is tried again, send then spill, with backoff: the direct
// queue fills up behind it and the sources pause, and nothing waits for
// room that may never come. When ctx ends, what is left is handed to
// drainDirect.
func (s *sender) sendDirect(ctx context.Context, b *batch) {
	held := 0 // of b's entries, counted in the held gauge
	defer func() { s.metrics.held.Add(-float64(held)) }()
	for attempt := 0; ; attempt++ {
		b.spill, b.retryIn = b.spill[:0], 0
		if !s.acquire(ctx) {
			b.spill = allIndexes(len(b.items))
		} else {
			s.deliver(ctx, b)
			s.release()
		}
		if len(b.spill) == 0 {
			s.putBack(b, nil)
			return
		}
		s.direct.setBad() // throttled, failed or stopped: flows spill rather than wait
		if ctx.Err() != nil {
			s.hold(b, b.spill)
			return
		}
		// Spill with the slot given back: the spool's own senders need the
		// slots to make room in a full spool. The wait for room is bounded
		// by the retry delay, after which the batch is sent again.
		wait := max(b.retryIn, s.backoff(attempt), s.primary.paused(), s.cfg.BackoffInitial)
		sctx, cancel := context.WithTimeout(ctx, wait)
		left, err := s.spill(sctx, b, b.spill)
		if len(left) == 0 {
			cancel()
			s.putBack(b, nil)
			return
		}
		s.metrics.held.Add(float64(len(left) - held))
		held = len(left)
		s.warnHeld(len(left), wait, err)
		<-sctx.Done() // the rest of the delay
		cancel()
		if ctx.Err() != nil {
			s.hold(b, left)
			return
		}
		s.keepOnly(b, left)
	}
}

// keepOnly shrinks b to the entries at idx (in order), returning the others
// to the pool.
func (s *sender) keepOnly(b *batch, idx []int) {
	keep := make(map[int]bool, len(idx))
	for _, i := range idx {
		keep[i] = true
	}
	n := 0
	for i, it := range b.items {
		if !keep[i] {
			s.direct.put(it)
			continue
		}
		b.items[n], b.aggs[n] = it, b.aggs[i]
		n++
	}
	clear(b.items[n:])
	b.items, b.aggs = b.items[:n], b.aggs[:n]
}

// putBack returns b's items to the pool, except those at keep.
func (s *sender) putBack(b *batch, keep []int) {
	kept := make(map[int]bool, len(keep))
	for _, i := range keep {
		kept[i] = true
	}
	for i, it := range b.items {
		if !kept[i] {
			s.direct.put(it)
		}
	}
	clear(b.items)
	b.items = b.items[:0]
}

// hold keeps the entries at idx of b for drainDirect (shutdown) and
// releases the rest.
func (s *sender) hold(b *batch, idx []int) {
	s.heldMu.Lock()
	for _, i := range idx {
		s.held = append(s.held, b.items[i])
	}
	s.heldMu.Unlock()
	s.putBack(b, idx)
}

// warnHeld logs, at most every 10 s, that undelivered aggregates stay in
// memory because the spool does not take them.
func (s *sender) warnHeld(n int, retry time.Duration, err error) {
	now := time.Now().UnixNano()
	last := s.lastHeldWarn.Load()
	if now-last < int64(10*time.Second) || !s.lastHeldWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("undelivered aggregates cannot be spilled to the spool; kept in memory and retried, sources pause",
		"aggregates", n, "retry_in", retry.Round(time.Millisecond), "error", err)
}

func allIndexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func (s *sender) takeDirect(b *batch, it *directItem) {
	a, err := aggregate.ParseEntry(it.entry)
	if err != nil {
		// We encoded it a moment ago: this is a bug, not bad input. Keep
		// the bytes in the dead-letter file rather than lose them.
		s.metrics.undecodable.Inc()
		if derr := s.dlq.writeRaw(s.flow, "", "undecodable_direct_entry: "+err.Error(), it.entry); derr == nil {
			it.ticket.markDone()
		}
		s.direct.put(it)
		return
	}
	a.BuiltFor = it.builtFor // from the flow's Builder: the output need not re-read the records
	b.items = append(b.items, it)
	b.aggs = append(b.aggs, s.forOutputs(a))
}

// spill writes the entries at idx of a direct batch to the spool; the
// spool's senders deliver them from there. An Append waits for room (when
// full: block) until ctx ends; an Append with ctx already done still takes
// an entry the spool has room for. spill returns the indexes it could not
// write nor otherwise release (dropped by when_full: drop_newest, or
// dead-lettered as too large), with the last error: their records are
// still only in memory (and in their files, whose checkpoints they hold).
func (s *sender) spill(ctx context.Context, b *batch, idx []int) (left []int, lastErr error) {
	for k, i := range idx {
		it := b.items[i]
		id, err := s.spool.Append(ctx, it.entry)
		switch {
		case err == nil:
			it.ticket.spilled(id)
			s.metrics.spilled.Inc()
			continue
		case errors.Is(err, spool.ErrFull):
			// when_full: drop_newest, as for any append: counted.
			s.metrics.droppedFull.Add(float64(b.aggs[i].Count))
			it.ticket.markDone()
			continue
		case errors.Is(err, spool.ErrTooLarge):
			if derr := s.dlq.writeAggregate(s.flow, "", "spool_entry_too_large: "+err.Error(), &b.aggs[i]); derr != nil {
				err = fmt.Errorf("dead-letter an aggregate too large for the spool: %w", derr)
				break
			}
			s.metrics.droppedTooLarge.Add(float64(b.aggs[i].Count))
			it.ticket.markDone()
			continue
		case errors.Is(err, spool.ErrClosed):
			return append(left, idx[k:]...), err
		}
		left = append(left, i)
		lastErr = fmt.Errorf("flow %s: spill: %w", s.flow, err)
	}
	return left, lastErr
}

// directLeft is what the direct path could neither deliver nor spill by the
// end of shutdown: its records are read again from their files.
type directLeft struct {
	aggregates, records int
}

// drainDirect spills what is still queued or held (shutdown), with the
// senders stopped. Every Append shares ctx: once it ends, an entry is
// written only if the spool has room at once, so the drain takes no longer
// than ctx whatever is queued.
func (s *sender) drainDirect(ctx context.Context) directLeft {
	var left directLeft
	if s.direct == nil {
		return left
	}
	s.heldMu.Lock()
	held := s.held
	s.held = nil
	s.heldMu.Unlock()
	var b batch
	drain := func(it *directItem) {
		b.items, b.aggs = b.items[:0], b.aggs[:0]
		s.takeDirect(&b, it)
		if len(b.items) == 0 {
			return
		}
		if idx, _ := s.spill(ctx, &b, []int{0}); len(idx) > 0 {
			left.aggregates++
			left.records += b.aggs[0].Count
		}
		s.direct.put(it)
	}
	for _, it := range held {
		drain(it)
	}
	for {
		select {
		case it := <-s.direct.ch:
			drain(it)
		default:
			return left
		}
	}
}

// adoptHeld takes the direct entries prev held when it stopped (a reload
// gave the flow a new sender): s sends them before the queued ones, so
// their records are delivered or spilled, and their files' checkpoints
// move past them, without a restart.
func (s *sender) adoptHeld(prev *sender) {
	prev.heldMu.Lock()
	held := prev.held
	prev.held = nil
	prev.heldMu.Unlock()
	s.heldMu.Lock()
	s.held = append(s.held, held...)
	s.heldMu.Unlock()
}

// requeueHeld puts the held entries on the direct queue for the workers;
// what ctx's end leaves is held again (for drainDirect).
func (s *sender) requeueHeld(ctx context.Context) {
	s.heldMu.Lock()
	held := s.held
	s.held = nil
	s.heldMu.Unlock()
	for i, it := range held {
		select {
		case s.direct.ch <- it:
		case <-ctx.Done():
			s.heldMu.Lock()
			s.held = append(s.held, held[i:]...)
			s.heldMu.Unlock()
			return
		}
	}
}
