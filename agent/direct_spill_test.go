package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

// spillRig is directRig with a spool configured by tune.
func spillRig(t *testing.T, out outputs.Output, tune func(*spool.Config)) (*flow, *sender, *spool.Spool) {
	t.Helper()
	dir := t.TempDir()
	sp := openTestSpool(t, dir, tune)
	cfg := DefaultFlowConfig()
	cfg.Name = "f"
	cfg.Aggregation.MaxBytes = 1024
	dlq := openDeadLetter(dir)
	t.Cleanup(func() { _ = dlq.close() })
	f, err := newFlow("f", cfg, sp, dlq, newMetrics().flow("f"), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	q := newDirectQueue()
	f.direct = q
	f.directOK.Store(true)
	scfg := cfg.Sender
	scfg.Concurrency = 1
	scfg.BackoffInitial, scfg.BackoffMax = time.Millisecond, 2*time.Millisecond
	m := newMetrics()
	s := &sender{flow: "f", cfg: scfg, spool: sp, dlq: dlq, log: slog.New(slog.DiscardHandler), metrics: m.sender("f"),
		primary: &outputState{out: out, metrics: m.output(out.Name())}, direct: q}
	return f, s, sp
}

// Regression: an aggregate sent directly whose first Send fails is spilled; if
// that Append fails for any reason but ErrFull (here ErrTooLarge: the spool's
// max_entry_bytes is below the aggregate size, a combination Validate
// accepts; the same branch is taken when a full spool with when_full: block
// does not make room within spill's 10 s), spill only logs. The item is
// returned to the pool: its records are not delivered, not spooled and not
// dead-lettered while the agent runs, and the file checkpoint is pinned
// behind them forever (and --once never finds the flow idle). The spool path
// dead-letters the very same aggregate (flow.onAggregate, ErrTooLarge).
func TestDirect_SpillFailureNeverOrphansTheAggregate(t *testing.T) {
	var calls atomic.Int64
	out := newScripted("o", func(outputs.Batch) error {
		if calls.Add(1) == 1 {
			return errors.New("503") // first try fails: the batch is spilled
		}
		return nil
	})
	f, s, sp := spillRig(t, out, func(c *spool.Config) { c.MaxEntryBytes = 512 })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	defer func() { cancel(); <-done }()

	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	end := emitLines(t, emit, 30) // ~3 KB: a few 1 KiB aggregates
	require.NoError(t, f.flushAll(t.Context()))

	ok := assertEventually(5*time.Second, func() bool {
		f.commit(time.Now())
		off, _ := c.of("A")
		return off == end && f.idle()
	})
	off, _ := c.of("A")
	require.True(t, ok, "every record must end delivered, durable or dead-lettered: checkpoint %d of %d, dead-lettered %d, spooled %d, delivered %d records",
		off, end, f.dlq.count.Load(), sp.Stats().Appended, userRecordsIn(out))
}

func assertEventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// Regression: the same orphaning with the default when_full: block. The
// destination is down long enough for the spool to fill; a direct batch
// that fails is spilled, and spill's Append waited a bounded time for room,
// then only logged. After the destination recovers and the spool drains,
// the orphaned records were never delivered and the checkpoint never
// reached the end. Now what cannot be spilled is kept and sent again.
func TestDirect_SpillWaitsForRoomInAFullSpool(t *testing.T) {
	var up atomic.Bool
	out := newScripted("o", func(outputs.Batch) error {
		if !up.Load() {
			return errors.New("503")
		}
		return nil
	})
	f, s, sp := spillRig(t, out, func(c *spool.Config) {
		c.SegmentBytes, c.MaxBytes = 4<<10, 8<<10
		c.WhenFull = spool.WhenFullBlock
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	defer func() { cancel(); <-done }()

	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	const n = 300
	var end int64
	emitted := make(chan error, 1)
	go func() {
		var off int64
		for i := range n {
			data := []byte(fmt.Sprintf("line %04d %090d", i, 0))
			if err := emit(ctx, source.Record{Data: data, Cursor: source.Cursor{FileID: "A", Start: off, Offset: off + int64(len(data)) + 1}}); err != nil {
				emitted <- err
				return
			}
			off += int64(len(data)) + 1
		}
		atomic.StoreInt64(&end, off)
		emitted <- f.flushAll(ctx)
	}()

	time.Sleep(2 * time.Second) // the spool fills; spills wait for room and are retried
	up.Store(true)
	require.NoError(t, <-emitted)
	ok := assertEventually(15*time.Second, func() bool {
		f.commit(time.Now())
		off, _ := c.of("A")
		return off == atomic.LoadInt64(&end) && f.idle() && sp.Stats().Entries == 0
	})
	off, _ := c.of("A")
	require.True(t, ok, "after the destination recovered every record must be delivered: checkpoint %d of %d, delivered %d of %d records, dead-lettered %d",
		off, atomic.LoadInt64(&end), userRecordsIn(out), n, f.dlq.count.Load())
}

// Regression: with when_full: drop_newest, a full direct queue (a hung
// destination) sends aggregates to the spool, whose Append on a full disk
// can take longer than the flow's bounded wait (failed writes and rolls):
// the ErrFull it then returned was taken for the end of the wait, so the
// flow offered the aggregate to the queue again, forever. The spool counted
// a drop at every turn, agent_records_dropped_total{reason="spool_full"}
// stayed 0 and the sources stayed paused, the opposite of what drop_newest
// promises. Seen with a spool on a 20 MiB ext4 image filled to ENOSPC; here
// the wait is shortened so that every Append outlasts it.
func TestDirect_DropNewestSpoolSlowToRefuse_DropsAndCountsInsteadOfLooping(t *testing.T) {
	out := &blockingOut{release: make(chan struct{})}
	defer close(out.release)
	f, s, sp := spillRig(t, out, func(c *spool.Config) {
		c.SegmentBytes, c.MaxBytes = 4<<10, 8<<10
		c.WhenFull = spool.WhenFullDropNewest
	})
	f.direct.fullWait = 20 * time.Millisecond
	f.spoolWait = time.Nanosecond // every Append answers after the wait ended
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	defer func() { cancel(); <-done }()

	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		var off int64
		for i := range 3000 {
			data := fmt.Appendf(nil, "line %04d %090d", i, 0)
			if emit(ctx, source.Record{Data: data, Cursor: source.Cursor{FileID: "A", Start: off, Offset: off + int64(len(data)) + 1}}) != nil {
				return
			}
			off += int64(len(data)) + 1
		}
		_ = f.flushAll(ctx)
	}()
	select {
	case <-emitted:
	case <-time.After(20 * time.Second):
		t.Fatalf("the source is still held: spool drops %d, records dropped %v",
			sp.Stats().DroppedNewest, testutil.ToFloat64(f.metrics.dropped("spool_full")))
	}
	require.Positive(t, sp.Stats().DroppedNewest)
	require.Positive(t, testutil.ToFloat64(f.metrics.dropped("spool_full")), "the dropped records are counted")
}
