package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

// Issue 8, item 9: `Retry-After: 86400` parked a worker for a day. The delay
// a throttle asks for is capped by max_throttle_delay.
func TestSender_ThrottleDelayIsCappedByMaxThrottleDelay(t *testing.T) {
	const cap = 100 * time.Millisecond
	out := newScripted("o", func(outputs.Batch) error { return outputs.Throttle(errors.New("503"), 24*time.Hour) }, ok)
	r := newSenderRig(t, out, nil, func(c *SenderConfig) { c.MaxThrottleDelay = cap })
	r.appendRecords(1)
	r.runUntilDrained() // fails after 20 s
	require.Len(t, out.times, 2)
	require.GreaterOrEqual(t, out.times[1].Sub(out.times[0]), cap, "the throttle is still honoured up to the cap")
	require.Equal(t, map[string]int{"r0": 1}, out.delivered())
}

func TestConfig_MaxThrottleDelay(t *testing.T) {
	require.Equal(t, time.Minute, DefaultFlowConfig().Sender.MaxThrottleDelay)
	_, err := ParseConfig("t.yaml", []byte(`
outputs: [{name: o, type: stdout}]
sources: [{name: s, type: file, file: {include: [/tmp/x.log]}}]
flows:
  - name: f
    sources: [s]
    output: o
    sender: {max_throttle_delay: 0s}
`), noEnv, testComponents)
	require.ErrorContains(t, err, "flows[0].sender.max_throttle_delay: must be positive")
}

// Issue 8, item 9: a direct batch's first throttle was ignored: the batch
// was spilled and the spool's workers sent it again at once (retry_in=0s).
// Every send to a throttled output waits for the delay it asked for.
func TestDirect_ThrottleIsHonouredByTheSpoolPath(t *testing.T) {
	const delay = 400 * time.Millisecond
	var calls atomic.Int64
	out := newScripted("o", func(outputs.Batch) error {
		if calls.Add(1) == 1 {
			return outputs.Throttle(errors.New("429"), delay)
		}
		return nil
	})
	f, s, sp := directRig(t, out)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	defer func() { cancel(); <-done }()

	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	end := emitLines(t, emit, 5) // one aggregate
	require.NoError(t, f.flushAll(t.Context()))
	require.Eventually(t, func() bool {
		f.commit(time.Now())
		off, _ := c.of("A")
		return off == end && sp.Stats().Entries == 0 && userRecordsIn(out) == 5
	}, 10*time.Second, 5*time.Millisecond)
	out.mu.Lock()
	times := append([]time.Time(nil), out.times...)
	out.mu.Unlock()
	require.Len(t, times, 2)
	require.GreaterOrEqual(t, times[1].Sub(times[0]), delay, "the second send must wait for the throttle's delay")
}

// Issue 8, item 8: the flow handed durable offsets to its sources only every
// checkpoint.interval, which adds to the window in which a crash sends
// records again. Durable records release their checkpoint promptly.
func TestCheckpoint_CommittedPromptlyOnceDurable(t *testing.T) {
	f, sp := newTestFlow(t, spool.SyncAlways, time.Second)
	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.runTimers(ctx, ctx, time.Hour) }()
	defer func() { cancel(); <-done }()

	end := emitLines(t, emit, 20)
	require.NoError(t, f.flushAll(t.Context()))
	require.Equal(t, spool.ID(sp.Stats().Appended), sp.Durable(), "sync always: durable once appended")
	require.Eventually(t, func() bool {
		off, _ := c.of("A")
		return off == end
	}, 5*time.Second, 5*time.Millisecond, "the checkpoint must move well before checkpoint.interval (1h here)")
}

// Hunt (issue 8): a spool entry the destination rejected, or one that could
// not be decoded, whose dead-letter write failed (a full or read-only state
// directory) was left unacknowledged but behind the spool's read cursor: it
// sat there until a restart, and --once waited for it forever. The sender
// keeps trying the dead-letter file, so the entry leaves the spool once the
// file can be written.
func TestSender_DeadLetterWriteFailureIsRetriedNotSkipped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry func(r *senderRig)
	}{
		{"rejected", func(r *senderRig) { r.appendRecords(1) }},
		{"undecodable", func(r *senderRig) {
			_, err := r.spool.Append(t.Context(), []byte{0xff, 0x00, 0x01})
			require.NoError(t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := newScripted("o", func(outputs.Batch) error { return outputs.Permanent(errors.New("400 bad record")) })
			r := newSenderRig(t, out, nil, nil)
			// A directory where the dead-letter file goes: it cannot be opened.
			require.NoError(t, os.Mkdir(r.dlq.path, 0o700))
			tc.entry(r)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- r.s.run(ctx) }()
			defer func() { cancel(); <-done }()

			require.Eventually(t, func() bool { return r.spool.Stats().Entries == 1 }, 5*time.Second, 5*time.Millisecond)
			time.Sleep(100 * time.Millisecond) // a few failed attempts
			require.Equal(t, int64(1), r.spool.Stats().Entries, "not released while the dead-letter file cannot take it")
			require.NoError(t, os.Remove(r.dlq.path))
			require.Eventually(t, func() bool { return r.spool.Stats().Entries == 0 }, 10*time.Second, 5*time.Millisecond,
				"once the dead-letter file can be written the entry must leave the spool without a restart")
			require.Len(t, r.deadLettered(), 1)
		})
	}
}

// Hunt (issue 8): the flow's timer goroutine both flushed aged aggregates
// and committed checkpoints. A flush waits for the flow's lock, which an
// emit blocked on a full spool holds for as long as the spool stays full:
// the checkpoints stopped, although what was appended before kept becoming
// durable, and a crash then read all of it again.
func TestCheckpoint_MovesWhileAnEmitIsBlockedOnAFullSpool(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir, func(c *spool.Config) {
		c.SegmentBytes, c.MaxBytes = 4<<10, 8<<10
		c.WhenFull = spool.WhenFullBlock
	})
	cfg := DefaultFlowConfig()
	cfg.Aggregation.MaxBytes = 1024
	cfg.Aggregation.MaxBufferedTime = 10 * time.Millisecond // the flush ticks (and blocks) before the first commit
	dlq := openDeadLetter(dir)
	t.Cleanup(func() { _ = dlq.close() })
	f, err := newFlow("f", cfg, sp, dlq, newMetrics().flow("f"), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))

	ctx, cancel := context.WithCancel(t.Context())
	timers := make(chan error, 1)
	go func() { timers <- f.runTimers(ctx, ctx, 20*time.Millisecond) }()
	emitted := make(chan error, 1)
	go func() {
		var off int64
		for i := 0; ; i++ {
			data := fmt.Appendf(nil, "line %04d %090d", i, 0)
			if err := emit(ctx, source.Record{Data: data, Cursor: source.Cursor{FileID: "A", Start: off, Offset: off + int64(len(data)) + 1}}); err != nil {
				emitted <- err
				return
			}
			off += int64(len(data)) + 1
		}
	}()
	defer func() { cancel(); <-emitted; require.NoError(t, <-timers) }()

	require.Eventually(t, func() bool { return sp.Stats().BlockedAppends > 0 }, 5*time.Second, time.Millisecond, "the spool fills")
	require.Eventually(t, func() bool {
		off, _ := c.of("A")
		return off > 0 && sp.Stats().BlockedAppends > 0
	}, 5*time.Second, 5*time.Millisecond, "what became durable while the emit is blocked must be committed")
}

// Hunt (issue 8): a PartialError naming no record of the batch (or one
// outside it) was taken as "everything else delivered": an error reported
// as success. It is retried as a whole.
func TestSender_PartialErrorWithInvalidIndexesIsNotSuccess(t *testing.T) {
	for _, failed := range [][]int{nil, {5}, {-1}} {
		t.Run(fmt.Sprint(failed), func(t *testing.T) {
			out := newScripted("o", func(outputs.Batch) error {
				return &outputs.PartialError{Failed: failed, Err: errors.New("500")}
			}, ok)
			r := newSenderRig(t, out, nil, nil)
			r.appendRecords(2)
			// Both written before the sender starts, so that its first
			// read takes them in one batch: the spool writes behind, and
			// a worker that found only the first left the second to
			// another worker's call (three calls under load).
			require.NoError(t, r.spool.Sync())
			r.runUntilDrained()
			require.Equal(t, 2, out.calls, "the batch must be sent again")
		})
	}
}
