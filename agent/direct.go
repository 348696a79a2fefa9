package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/spool"
)

// The direct path. Writing every aggregate to the spool and reading it back
// makes the disk the ceiling and costs CPU for nothing while the destination
// keeps up. For flows whose sources can replay (files: their checkpoints
// move only past records that are delivered or durable), an aggregate may go
// straight to a sender in memory. If the destination does not take it at the
// first attempt, or the direct queue is full, it is written to the spool and
// follows the ordinary path. A crash loses nothing: a record that was only in
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
	entry  []byte
	ticket *ticket
}

// directQueue is the bounded hand-off between a flow and its sender.
type directQueue struct {
	ch   chan *directItem
	pool sync.Pool
}

// directQueueLen bounds the aggregates waiting in memory: 64 aggregates of
// the default 50 KiB are about 3 MiB, enough to keep the senders busy
// between two batches.
const directQueueLen = 64

func newDirectQueue() *directQueue {
	return &directQueue{ch: make(chan *directItem, directQueueLen)}
}

// offer queues a copy of a's entry encoding without blocking. It returns nil
// when the queue is full (the caller spools the aggregate).
func (q *directQueue) offer(a *aggregate.Aggregate) *ticket {
	it, _ := q.pool.Get().(*directItem)
	if it == nil {
		it = &directItem{}
	}
	it.entry = a.AppendEntry(it.entry[:0])
	tk := &ticket{}
	it.ticket = tk
	select {
	case q.ch <- it:
		return tk // it belongs to the sender now
	default:
		q.put(it)
		return nil
	}
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
	var b batch
	maxBytes := int(s.cfg.BatchMaxBytes)
	for {
		b.ids, b.items, b.aggs, b.spill = b.ids[:0], b.items[:0], b.aggs[:0], b.spill[:0]
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
		if len(b.items) == 0 {
			continue
		}
		if !s.acquire(ctx) {
			b.spill = allIndexes(len(b.items))
		} else {
			s.deliver(ctx, &b)
			s.release()
		}
		// Spill with the slot given back: the spool's own senders need the
		// slots to make room in a full spool.
		s.spill(ctx, &b, b.spill)
		for _, it := range b.items {
			s.direct.put(it)
		}
	}
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
	b.items = append(b.items, it)
	b.aggs = append(b.aggs, a)
}

// spill writes the entries at idx of a direct batch to the spool; the
// spool's senders deliver them from there. It waits for room like any
// appender (when_full: block) until ctx ends; then, shutting down, it still
// tries for a bounded time. What it cannot write is not released: its
// records hold their file checkpoints and are read again after a restart.
func (s *sender) spill(ctx context.Context, b *batch, idx []int) {
	var shutdown context.CancelFunc
	for _, i := range idx {
		it := b.items[i]
		for attempt := 0; ; attempt++ {
			if ctx.Err() != nil && shutdown == nil {
				ctx, shutdown = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer shutdown()
			}
			id, err := s.spool.Append(ctx, it.entry)
			switch {
			case err != nil && ctx.Err() != nil && shutdown == nil:
				continue // stopping: try again within the shutdown bound
			case err == nil:
				it.ticket.spilled(id)
				s.metrics.spilled.Inc()
			case errors.Is(err, spool.ErrFull):
				// when_full: drop_newest, as for any append: counted.
				s.metrics.droppedFull.Add(float64(b.aggs[i].Count))
				it.ticket.markDone()
			case errors.Is(err, spool.ErrTooLarge):
				if derr := s.dlq.writeAggregate(s.flow, "", "spool_entry_too_large: "+err.Error(), &b.aggs[i]); derr != nil {
					s.log.Error("cannot dead-letter an aggregate too large for the spool; its records will be read again after a restart", "error", derr)
					break
				}
				s.metrics.droppedTooLarge.Add(float64(b.aggs[i].Count))
				it.ticket.markDone()
			case errors.Is(err, spool.ErrClosed), ctx.Err() != nil:
				s.log.Error("cannot spill an undelivered aggregate while stopping; its records will be read again after a restart",
					"error", fmt.Errorf("flow %s: %w", s.flow, err))
			default:
				// An I/O error: keep trying, the records are only in memory.
				s.log.Error("spilling an undelivered aggregate to the spool failed; retrying", "error", fmt.Errorf("flow %s: %w", s.flow, err))
				if sleepCtx(ctx, s.backoff(attempt)) {
					continue
				}
			}
			break
		}
	}
}

// drainDirect spills what is still queued (shutdown).
func (s *sender) drainDirect() {
	if s.direct == nil {
		return
	}
	var b batch
	for {
		select {
		case it := <-s.direct.ch:
			b.items, b.aggs = b.items[:0], b.aggs[:0]
			s.takeDirect(&b, it)
			if len(b.items) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				s.spill(ctx, &b, []int{0})
				cancel()
				s.direct.put(it)
			}
		default:
			return
		}
	}
}
