package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

// sender delivers a flow's spooled aggregates to its output: the one place
// where retry, backoff, throttling, failover and dead-lettering live.
//
// Each of Concurrency workers reads a batch of entries from the spool, sends
// it, and acknowledges entries to the spool only once the destination
// confirmed them (or they were dead-lettered). Unacknowledged entries stay in
// the spool and are delivered again after a restart: at-least-once.
type sender struct {
	flow     string
	cfg      SenderConfig
	spool    *spool.Spool
	primary  *outputState
	failover *outputState // nil without failover
	dlq      *deadLetter
	log      *slog.Logger
	metrics  *senderMetrics
	// lines: the outputs all write records one by one and take aggregates
	// in the newline framing; when false such aggregates (spooled under an
	// earlier configuration) are turned into KPL before they are sent.
	lines bool

	mu         sync.Mutex
	onFailover bool
	switchedAt time.Time
	primaryBad int // consecutive failed attempts on the primary

	lastWarn atomic.Int64 // unix nanos of the last retry warning (rate limit)
	dlLog    deadLetterLog

	// live is the watchdog's view of the workers (status.go).
	live liveness
	// draining: a reload replaces this sender; workers take no new batch
	// (quiesce).
	draining atomic.Bool

	// direct carries aggregates that skip the spool while the destination
	// keeps up (see direct.go); nil when the flow's sources cannot replay.
	direct *directQueue
	// slots bounds the Sends in flight across spool and direct workers.
	slots chan struct{}
	// held are direct entries neither delivered nor spilled when the
	// workers stopped: drainDirect tries to spill them once more.
	heldMu       sync.Mutex
	held         []*directItem
	lastHeldWarn atomic.Int64
}

type outputState struct {
	out     outputs.Output
	metrics *outputMetrics
	// pausedUntil (unix nanos) is when the output's last throttle ends:
	// no worker, on either path, sends to it before then.
	pausedUntil atomic.Int64
	// seen is what `agent status` shows of it (status.go).
	seen outputSeen
	// flight are its sends in flight, for a send that hangs (inflight.go).
	flight inflight
}

// pause notes that the output asked for no sends during d.
func (o *outputState) pause(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := o.pausedUntil.Load()
		if cur >= until || o.pausedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// paused returns how long the output's throttle still lasts.
func (o *outputState) paused() time.Duration {
	return time.Until(time.Unix(0, o.pausedUntil.Load()))
}

// batch is a set of entries handed to one Send: spool entries (ids), or
// aggregates that skipped the spool (items).
type batch struct {
	ids   []spool.ID
	items []*directItem
	aggs  []aggregate.Aggregate
	buf   []byte        // backing storage of the spool entries
	ents  []spool.Entry // entries of the last read (reused)
	// spill lists the direct entries deliver could not finish: the worker
	// writes them to the spool once it gave back its send slot.
	spill []int
	// retryIn is the delay deliver chose after a direct batch failed.
	retryIn time.Duration
	// born is when the batch was first tried (max_retry_duration counts
	// from it, across the in-memory retries of a direct batch).
	born time.Time
}

func (s *sender) run(ctx context.Context) error {
	// The first worker error stops the others: the agent shuts down rather
	// than limp on with a spool it cannot read.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	workers := s.cfg.Concurrency
	if s.direct != nil {
		workers *= 2
	}
	s.slots = make(chan struct{}, s.cfg.Concurrency)
	errc := make(chan error, workers)
	if s.direct != nil {
		wg.Go(func() { s.requeueHeld(ctx) }) // held by the sender this one replaced
	}
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i < s.cfg.Concurrency {
				err = s.worker(ctx)
			} else {
				err = s.directWorker(ctx)
			}
			if err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// acquire takes one of the Concurrency send slots.
func (s *sender) acquire(ctx context.Context) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *sender) release() { <-s.slots }

func (s *sender) worker(ctx context.Context) error {
	var b batch
	for {
		if err := s.fill(ctx, &b); err != nil {
			if ctx.Err() != nil || errors.Is(err, spool.ErrClosed) {
				return nil
			}
			return fmt.Errorf("flow %s: read spool: %w", s.flow, err)
		}
		if s.draining.Load() || !s.acquire(ctx) {
			return nil // the batch stays unacknowledged in the spool
		}
		s.deliver(ctx, &b)
		s.release()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// fill blocks for one entry, then takes whatever else is ready up to the
// batch limits. Entries are read into one slab per worker, straight from
// the spool's segment files (spool.NextBatch: one read per run of entries,
// no copy per entry), so memory per worker is bounded by batch_max_bytes
// plus one entry.
func (s *sender) fill(ctx context.Context, b *batch) error {
	maxBytes := int(s.cfg.BatchMaxBytes)
	if b.buf == nil {
		b.buf = make([]byte, 0, maxBytes+64<<10)
	}
	b.born = time.Time{}
	for {
		b.ids, b.aggs = b.ids[:0], b.aggs[:0]
		var err error
		b.ents, _, err = s.spool.NextBatch(ctx, b.buf[:0], s.cfg.BatchMaxRecords, b.ents[:0])
		if err != nil {
			return err
		}
		for _, e := range b.ents {
			s.take(ctx, b, e.ID, e.Data)
		}
		clear(b.ents) // no reference to the slab or to an entry read alone
		if len(b.ids) > 0 {
			return nil
		}
	}
}

// take adds one spool entry to b; an entry that cannot be interpreted goes
// to the dead-letter file.
func (s *sender) take(ctx context.Context, b *batch, id spool.ID, data []byte) {
	a, err := aggregate.ParseEntry(data)
	if err != nil {
		// The spool's CRC matched, so this is not corruption at rest but an
		// entry we cannot interpret (written by a newer version?). Keep it
		// out of the output and in the dead-letter file. Until that file
		// takes it, the worker retries: skipped, it would stay in the
		// spool unread until a restart (and --once would never finish).
		s.metrics.undecodable.Inc()
		for attempt := 0; ; attempt++ {
			derr := s.dlq.writeRaw(s.flow, "", "undecodable_spool_entry: "+err.Error(), data)
			if derr == nil {
				s.ack(id)
				return
			}
			if attempt == 0 { // the dead-letter file logs the failure (deadLetter.noteResult)
				s.log.Debug("cannot dead-letter an undecodable spool entry; retrying (it stays in the spool)", "error", derr)
			}
			if !sleepCtx(ctx, s.backoff(attempt)) {
				return
			}
		}
	}
	b.ids = append(b.ids, id)
	b.aggs = append(b.aggs, s.forOutputs(a))
}

// forOutputs returns a as the flow's outputs take it: KPL for outputs that
// are not all outputs.RecordWriters.
func (s *sender) forOutputs(a aggregate.Aggregate) aggregate.Aggregate {
	if s.lines || !a.Aggregated || a.Framing == aggregate.FramingKPL {
		return a
	}
	return a.KPL()
}

func (s *sender) ack(id spool.ID) {
	if err := s.spool.Ack(id); err != nil && !errors.Is(err, spool.ErrClosed) {
		s.log.Error("spool ack failed; the entry will be sent again after a restart", "error", err)
	}
}

// done releases entry i of b: delivered or dead-lettered.
func (s *sender) done(b *batch, i int) {
	if b.items != nil {
		b.items[i].ticket.markDone()
		return
	}
	s.ack(b.ids[i])
}

// deliver sends b until every entry is delivered or dead-lettered, or ctx
// ends (the rest stays in the spool). A direct batch is not retried in
// memory: what is not delivered at the first try goes to the spool.
func (s *sender) deliver(ctx context.Context, b *batch) {
	if b.born.IsZero() {
		b.born = time.Now()
	}
	start := b.born
	s.live.enter()
	defer s.live.leave()
	pending := make([]int, len(b.aggs))
	for i := range pending {
		pending[i] = i
	}
	sub := outputs.Batch{Records: make([]aggregate.Aggregate, 0, len(b.aggs))}
	for attempt := 0; len(pending) > 0; attempt++ {
		sub.Records = sub.Records[:0]
		for _, i := range pending {
			sub.Records = append(sub.Records, b.aggs[i])
		}
		o, isPrimary := s.pick()
		if wait := o.paused(); wait > 0 {
			// The output throttled: nobody sends to it before the delay
			// it asked for is over.
			if b.items != nil {
				b.spill = append(b.spill, pending...) // the spool (or memory) waits
				return
			}
			if !sleepCtx(ctx, wait) {
				return
			}
		}
		t0 := time.Now()
		s.live.beat(t0)
		tok := o.flight.begin(t0)
		err := o.out.Send(ctx, sub)
		o.flight.end(tok)
		o.metrics.duration.Observe(time.Since(t0).Seconds())
		s.live.beat(time.Now())
		err = s.settleRejected(o, b, pending, err) // user records rejected alone (rejects.go)
		s.report(isPrimary, err)
		if s.direct != nil {
			s.direct.note(err) // whether flows wait for room in a full direct queue
		}
		o.note(err, &sub)
		if err == nil {
			o.metrics.sent.Add(float64(sub.UserRecords()))
			o.metrics.requests("ok").Inc()
			for _, i := range pending {
				s.done(b, i)
			}
			return
		}
		if ctx.Err() != nil {
			if b.items != nil {
				b.spill = append(b.spill, pending...)
			}
			return
		}
		var pe *outputs.PartialError
		failed := pending
		if errors.As(err, &pe) && !validPartial(pe, len(pending)) {
			// A partial failure that names no record of the batch, or
			// one outside it, cannot say what was delivered: none of it
			// counts as delivered (a resend, not a loss).
			s.log.Error("output reported a partial failure with invalid indexes; retrying the whole batch",
				"output", o.out.Name(), "failed", len(pe.Failed), "batch", len(pending))
			err, pe = fmt.Errorf("%w (invalid partial failure)", pe.Err), nil
		}
		if pe != nil {
			failed = failed[:0:0]
			isFailed := make(map[int]string, len(pe.Failed))
			for k, j := range pe.Failed {
				if j >= 0 && j < len(pending) {
					reason := ""
					if k < len(pe.Reasons) {
						reason = pe.Reasons[k]
					}
					isFailed[j] = reason
				}
			}
			for j, i := range pending {
				if _, bad := isFailed[j]; bad {
					failed = append(failed, i)
					continue
				}
				o.metrics.sent.Add(float64(b.aggs[i].Count))
				s.done(b, i)
			}
			o.metrics.requests("partial").Inc()
			if outputs.IsPermanent(pe.Err) {
				var idx []int
				var reasons []string
				for j, i := range pending {
					if reason, bad := isFailed[j]; bad {
						if reason == "" {
							reason = pe.Err.Error()
						}
						idx, reasons = append(idx, i), append(reasons, "rejected: "+reason)
					}
				}
				s.deadLetterAll(ctx, o, b, idx, reasons)
				return
			}
			pending = failed
		} else if outputs.IsPermanent(err) {
			o.metrics.requests("rejected").Inc()
			s.deadLetterAll(ctx, o, b, pending, sameReason(len(pending), "rejected: "+err.Error()))
			return
		} else {
			o.metrics.requests("error").Inc()
		}
		if s.cfg.MaxRetryDuration > 0 && time.Since(start) >= s.cfg.MaxRetryDuration {
			reason := fmt.Sprintf("retries_exhausted after %s: %v", time.Since(start).Round(time.Millisecond), err)
			s.deadLetterAll(ctx, o, b, pending, sameReason(len(pending), reason))
			return
		}
		delay := s.backoff(attempt)
		class := "error"
		var te *outputs.ThrottleError
		if errors.As(err, &te) {
			class = "throttle"
			d := min(max(te.Delay, 0), s.maxThrottle())
			o.pause(d)
			delay = max(delay, d)
		} else if pe != nil {
			class = "partial"
		}
		o.metrics.retries(class).Add(float64(len(pending)))
		if b.items != nil {
			// The destination is not keeping up: the rest waits on disk
			// (or, while the spool has no room, in memory), and is sent
			// again after delay.
			b.spill = append(b.spill, pending...)
			b.retryIn = delay
			s.warnRetry(o, err, delay, len(pending))
			return
		}
		s.warnRetry(o, err, delay, len(pending))
		if !sleepCtx(ctx, delay) {
			return
		}
	}
}

// deadLetterLogEvery bounds how often a sender logs that it dead-lettered
// records.
const deadLetterLogEvery = time.Minute

// deadLetterLog rate-limits the ERROR line that says records were
// dead-lettered: the first at once, then at most one per
// deadLetterLogEvery with the records dead-lettered since the last line.
type deadLetterLog struct {
	mu      sync.Mutex
	last    time.Time
	records int64
}

// deadLettered logs, rate-limited, that n records of output went to the
// dead-letter file for reason (the last one's, when several).
func (s *sender) deadLettered(output string, n int64, reason string) {
	if n <= 0 {
		return
	}
	l := &s.dlLog
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records += n
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < deadLetterLogEvery {
		return
	}
	if len(reason) > 300 {
		reason = reason[:300] + "..."
	}
	s.log.Error("records dead-lettered (refused for good, or retried longer than max_retry_duration: see reason); agent dead-letter shows them, agent dead-letter replay sends them again",
		"output", output, "records", l.records, "reason", reason)
	l.last, l.records = now, 0
}

// deadLetterAll writes the entries at idx of b to the dead-letter file,
// each with its reason, and releases them. An entry the file does not take
// is not released: a direct one goes to b.spill (the spool, or memory); a
// spool entry is tried again with backoff until written or ctx ends (then
// it stays in the spool and is sent again after a restart). Skipped, it
// would sit unread in the spool until a restart.
func (s *sender) deadLetterAll(ctx context.Context, o *outputState, b *batch, idx []int, reasons []string) {
	for attempt := 0; len(idx) > 0; attempt++ {
		s.live.beat(time.Now())
		var failed []int
		var failedReasons []string
		var lastErr error
		for k, i := range idx {
			if err := s.dlq.writeAggregate(s.flow, o.out.Name(), reasons[k], &b.aggs[i]); err != nil {
				failed, failedReasons, lastErr = append(failed, i), append(failedReasons, reasons[k]), err
				continue
			}
			o.metrics.deadLettered.Add(float64(b.aggs[i].Count))
			s.deadLettered(o.out.Name(), int64(b.aggs[i].Count), reasons[k])
			s.done(b, i)
		}
		if len(failed) == 0 {
			return
		}
		// The dead-letter file logs its failures, once an episode (see
		// deadLetter.noteResult): not here, at every batch and retry.
		if b.items != nil {
			s.log.Debug("cannot write the dead-letter file; the entries go to the spool", "entries", len(failed), "error", lastErr)
			b.spill = append(b.spill, failed...)
			return
		}
		if attempt == 0 {
			s.log.Debug("cannot write the dead-letter file; retrying (the entries stay in the spool)", "entries", len(failed), "error", lastErr)
		}
		if !sleepCtx(ctx, s.backoff(attempt)) {
			return
		}
		idx, reasons = failed, failedReasons
	}
}

// validPartial reports whether pe names at least one record of a batch of
// n, and none outside it.
func validPartial(pe *outputs.PartialError, n int) bool {
	if len(pe.Failed) == 0 {
		return false
	}
	for _, j := range pe.Failed {
		if j < 0 || j >= n {
			return false
		}
	}
	return true
}

func sameReason(n int, reason string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = reason
	}
	return out
}

// maxThrottle caps the delay a throttle asks for (max_throttle_delay).
func (s *sender) maxThrottle() time.Duration {
	if s.cfg.MaxThrottleDelay > 0 {
		return s.cfg.MaxThrottleDelay
	}
	return DefaultFlowConfig().Sender.MaxThrottleDelay
}

// backoff is exponential with full jitter: uniform in [0, min(max, initial·2^n)].
func (s *sender) backoff(attempt int) time.Duration {
	ceil := s.cfg.BackoffInitial << min(attempt, 30)
	if ceil <= 0 || ceil > s.cfg.BackoffMax {
		ceil = s.cfg.BackoffMax
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// pick chooses the output for the next attempt: the primary, unless it
// failed failover_after times in a row and a failover exists; the primary is
// tried again every failback_after.
func (s *sender) pick() (*outputState, bool) {
	if s.failover == nil {
		return s.primary, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onFailover && time.Since(s.switchedAt) >= s.cfg.FailbackAfter {
		s.onFailover = false // probe the primary
		s.primaryBad = s.cfg.FailoverAfter - 1
		s.switched(s.failover, s.primary, "trying the primary output again")
	}
	if s.onFailover {
		return s.failover, false
	}
	return s.primary, true
}

// report feeds the failover state machine. Only failures that say the
// destination is unhealthy count (network errors, 5xx): a throttle or a
// partial failure means it is up and answering.
func (s *sender) report(primary bool, err error) {
	if s.failover == nil || !primary {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var te *outputs.ThrottleError
	var pe *outputs.PartialError
	if err == nil || outputs.IsPermanent(err) || errors.As(err, &pe) {
		s.primaryBad = 0
		return
	}
	if errors.As(err, &te) {
		return
	}
	s.primaryBad++
	if !s.onFailover && s.primaryBad >= s.cfg.FailoverAfter {
		s.onFailover = true
		s.switchedAt = time.Now()
		s.metrics.failovers.Inc()
		s.switched(s.primary, s.failover, "")
		s.log.Warn("primary output failing; using the failover output", "failover", s.failover.out.Name(), "failures", s.primaryBad, "error", err)
	}
}

func (s *sender) warnRetry(o *outputState, err error, delay time.Duration, n int) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(10*time.Second) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("send failed; retrying", "output", o.out.Name(), "entries", n, "retry_in", delay.Round(time.Millisecond), "error", err)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
