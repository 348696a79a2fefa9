package agent

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

// directRig wires a flow and its sender with the direct path on.
func directRig(t *testing.T, out outputs.Output) (*flow, *sender, *spool.Spool) {
	t.Helper()
	f, sp := newTestFlow(t, spool.SyncInterval, 10*time.Millisecond)
	q := newDirectQueue()
	f.direct = q
	f.directOK.Store(true)
	cfg := DefaultFlowConfig().Sender
	cfg.Concurrency = 2
	cfg.BackoffInitial, cfg.BackoffMax = time.Millisecond, 2*time.Millisecond
	m := newMetrics()
	s := &sender{flow: "f", cfg: cfg, spool: sp, dlq: f.dlq, log: slog.New(slog.DiscardHandler), metrics: m.sender("f"),
		primary: &outputState{out: out, metrics: m.output(out.Name())}, direct: q}
	return f, s, sp
}

func TestDirect_DestinationKeepsUp_NothingTouchesTheSpool(t *testing.T) {
	out := newScripted("o", ok)
	f, s, sp := directRig(t, out)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()

	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	end := emitLines(t, emit, 200)
	require.NoError(t, f.flushAll(t.Context()))
	require.Eventually(t, func() bool {
		f.commit(time.Now())
		off, _ := c.of("A")
		return off == end
	}, 10*time.Second, 5*time.Millisecond, "delivered records release the checkpoint without any fsync")
	cancel()
	require.NoError(t, <-done)
	require.Zero(t, sp.Stats().Appended, "the spool is not written while the destination keeps up")
	require.True(t, f.idle())
}

func TestDirect_FailedSendSpillsToTheSpoolAndIsDeliveredFromThere(t *testing.T) {
	fails := 0
	out := newScripted("o", func(outputs.Batch) error {
		fails++
		if fails <= 3 {
			return errors.New("503")
		}
		return nil
	})
	f, s, sp := directRig(t, out)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()

	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	end := emitLines(t, emit, 100)
	require.NoError(t, f.flushAll(t.Context()))
	require.Eventually(t, func() bool {
		f.commit(time.Now())
		off, _ := c.of("A")
		return off == end && sp.Stats().Entries == 0
	}, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Positive(t, sp.Stats().Appended, "undelivered aggregates went to the spool")
	require.GreaterOrEqual(t, userRecordsIn(out), 100)
}

// userRecordsIn counts the user records the scripted output delivered
// (bodies of aggregated entries hold several).
func userRecordsIn(out *scripted) int {
	out.mu.Lock()
	defer out.mu.Unlock()
	return out.records
}

func TestDirect_ShutdownSpillsWhatIsQueued(t *testing.T) {
	block := make(chan struct{})
	out := newScripted("o", func(outputs.Batch) error { <-block; return nil })
	f, s, sp := directRig(t, out)
	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	end := emitLines(t, emit, 50)
	require.NoError(t, f.flushAll(t.Context()))
	// No sender runs: everything waits in the direct queue. Shutdown spills it.
	close(block)
	s.drainDirect(t.Context())
	require.NoError(t, sp.Sync())
	f.commit(time.Now())
	off, _ := c.of("A")
	require.Equal(t, end, off, "spilled and synced: the checkpoint may pass")
	require.Positive(t, sp.Stats().Entries)
}

// An aggregate's BuiltFor (the shard its Builder grouped it by, which lets
// the Kinesis output skip re-reading its records) is not in its entry
// encoding: the direct queue carries it to the sender. Spilled, it is lost,
// and the output reads the records.
func TestDirect_CarriesBuiltFor(t *testing.T) {
	m, err := aggregate.NewShardMap([]aggregate.Shard{{ID: "s0", End: aggregate.MaxHashKey}})
	require.NoError(t, err)
	bld, err := aggregate.NewBuilder(aggregate.Config{}, m)
	require.NoError(t, err)
	for _, pk := range []string{"a", "b"} {
		_, err := bld.Add(aggregate.Record{Data: []byte(pk), PartitionKey: pk}, time.Now(), nil)
		require.NoError(t, err)
	}
	q := newDirectQueue()
	var want *aggregate.Shard
	require.NoError(t, bld.FlushAll(func(_ int, a *aggregate.Aggregate) error {
		want = a.BuiltFor
		tk, _ := q.offer(t.Context(), a, 0)
		require.NotNil(t, tk)
		return nil
	}))
	require.NotNil(t, want)
	var b batch
	(&sender{direct: q}).takeDirect(&b, <-q.ch)
	require.Len(t, b.aggs, 1)
	require.Same(t, want, b.aggs[0].BuiltFor)
	require.Equal(t, 2, b.aggs[0].Count)
}
