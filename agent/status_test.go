package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

func TestStatusTracker_OldestAgeFollowsTheOldestUnacknowledgedEntry(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	st := newStatusTracker(t0)
	fs := &flowSamples{lastTick: t0}
	st.flows["f"] = fs
	age := func(now time.Time, appended uint64, entries int64) time.Duration {
		return st.oldestAge("f", spoolStatsView{Entries: entries, Appended: appended}, now)
	}

	fs.observe(at(1), 5, 5, false)   // entries 0-4 appended in (0s, 1s]
	fs.observe(at(2), 10, 10, false) // entries 5-9 in (1s, 2s]
	require.Equal(t, 3*time.Second, age(at(3), 10, 10), "entry 0 waits since at most t0")
	fs.observe(at(3), 10, 5, false) // 0-4 acknowledged
	require.Equal(t, 2*time.Second, age(at(3), 10, 5), "entry 5 waits since at most 1s")
	require.Len(t, fs.appends, 1, "the first sample is no longer needed")
	fs.observe(at(4), 10, 0, false)
	require.Zero(t, age(at(4), 10, 0), "an empty spool has no age")

	// Entries recovered at start-up are at least as old as the process.
	st2 := newStatusTracker(t0)
	st2.flows["f"] = &flowSamples{lastTick: t0}
	require.Equal(t, 7*time.Second, st2.oldestAge("f", spoolStatsView{Entries: 3, Appended: 0}, at(7)))
	// ... and as their oldest segment's last write.
	st2.setRecovered("f", t0.Add(-time.Hour))
	require.Equal(t, time.Hour+7*time.Second, st2.oldestAge("f", spoolStatsView{Entries: 3, Appended: 0}, at(7)))
}

func TestStatusTracker_MergedSamplesNeverMakeTheAgeYounger(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	st := newStatusTracker(t0)
	fs := &flowSamples{lastTick: t0}
	st.flows["f"] = fs
	n := maxAppendSamples + 10
	for i := 1; i <= n; i++ {
		fs.observe(t0.Add(time.Duration(i)*time.Second), uint64(i), int64(i), false)
	}
	require.LessOrEqual(t, len(fs.appends), maxAppendSamples)
	now := t0.Add(time.Duration(n+1) * time.Second)
	// The oldest entry (number 0) was appended in (t0, t0+1s].
	require.Equal(t, time.Duration(n+1)*time.Second, st.oldestAge("f", spoolStatsView{Entries: int64(n), Appended: uint64(n)}, now))
	// Entry 1000 was appended in (t0+1000s, t0+1001s]: merged, its bound is no later.
	got := st.oldestAge("f", spoolStatsView{Entries: int64(n - 1000), Appended: uint64(n)}, now)
	require.GreaterOrEqual(t, got, now.Sub(t0.Add(1000*time.Second)))
	require.LessOrEqual(t, got, now.Sub(t0.Add(998*time.Second)))
}

func newTestOutputState(name string) *outputState {
	return &outputState{out: namedOutput(name), metrics: newMetrics().output(name)}
}

type namedOutput string

func (n namedOutput) Name() string                            { return string(n) }
func (namedOutput) Send(context.Context, outputs.Batch) error { return nil }
func (namedOutput) Close(context.Context) error               { return nil }

func TestOutputState_StatesFollowResults(t *testing.T) {
	o := newTestOutputState("web")
	now := time.Now()
	require.Equal(t, OutputIdle, o.state(now))
	batch := &outputs.Batch{Records: []aggregate.Aggregate{{Body: []byte("abc"), Count: 2}, {Body: []byte("de"), Count: 1}}}

	o.note(nil, batch)
	require.Equal(t, OutputOK, o.state(time.Now()))
	require.EqualValues(t, 3, o.seen.records.Load())
	require.EqualValues(t, 5, o.seen.bytes.Load())

	o.note(errors.New("connection refused"), batch)
	require.Equal(t, OutputRetrying, o.state(time.Now()))
	require.Positive(t, o.failingFor(time.Now().Add(time.Second)))
	require.Equal(t, "connection refused", *o.seen.lastErr.Load())

	// A partial failure: the destination answers; the delivered part counts.
	o.note(&outputs.PartialError{Failed: []int{0}, Err: errors.New("throughput exceeded")}, batch)
	require.Equal(t, OutputOK, o.state(time.Now()))
	require.Zero(t, o.failingFor(time.Now()))
	require.EqualValues(t, 4, o.seen.records.Load())

	// A throttle pauses the output: throttled, not failing.
	o.pause(time.Minute)
	o.note(outputs.Throttle(errors.New("slow down"), time.Minute), batch)
	require.Equal(t, OutputThrottled, o.state(time.Now()))
	require.Zero(t, o.failingFor(time.Now()))
}

func TestNotReady_WhenEveryOutputOfAFlowFailsLongerThanNotReadyAfter(t *testing.T) {
	primary, failover := newTestOutputState("web"), newTestOutputState("local")
	a := &Agent{st: newStatusTracker(time.Now())}
	a.cfg.Admin.NotReadyAfter = time.Minute
	fr := &flowRuntime{cfg: FlowConfig{Name: "main"}, sender: &sender{primary: primary, failover: failover}}
	a.running = []*flowRuntime{fr}
	now := time.Now()
	require.Equal(t, "the pipeline is starting", a.notReady(now))
	a.state.Store(stateRunning)
	require.Empty(t, a.notReady(now))

	primary.seen.failingSince.Store(now.Add(-2 * time.Minute).UnixNano())
	require.Empty(t, a.notReady(now), "the failover still delivers")
	failover.seen.failingSince.Store(now.Add(-30 * time.Second).UnixNano())
	require.Empty(t, a.notReady(now), "not failing for long enough")
	failover.seen.failingSince.Store(now.Add(-90 * time.Second).UnixNano())
	require.Contains(t, a.notReady(now), "flow main: its outputs have been failing for 1m30s")

	failover.seen.failingSince.Store(0)
	a.st.flows["main"] = &flowSamples{blockedSince: now.Add(-2 * time.Minute)}
	require.Contains(t, a.notReady(now), "flow main: its spool has been full, blocking its sources, for 2m0s")

	a.cfg.Admin.NotReadyAfter = 0
	require.Empty(t, a.notReady(now), "not_ready_after 0 only follows the lifecycle")
	a.state.Store(stateStopping)
	require.Equal(t, "the pipeline is stopping", a.notReady(now))
}

func TestAlive_ReportsAStuckSenderOrTimers(t *testing.T) {
	fl := &flow{}
	fl.clock.Store(time.Now().UnixNano())
	s := &sender{cfg: SenderConfig{BackoffMax: time.Second, MaxThrottleDelay: time.Second}, primary: newTestOutputState("web")}
	a := &Agent{st: newStatusTracker(time.Now())}
	a.running = []*flowRuntime{{cfg: FlowConfig{Name: "main"}, flow: fl, sender: s}}
	require.NoError(t, a.Alive())

	// A worker delivering, with its last progress long ago: stuck.
	s.live.enter()
	require.NoError(t, a.Alive())
	s.live.beat(time.Now().Add(-livenessSlack - 3*time.Second))
	require.ErrorContains(t, a.Alive(), "flow main: its sender has made no progress")
	s.live.leave()
	require.NoError(t, a.Alive(), "idle workers wait for entries: alive")

	fl.clock.Store(time.Now().Add(-livenessSlack - time.Second).UnixNano())
	require.ErrorContains(t, a.Alive(), "flow main: its timers have not ticked")
}

func TestAlive_TimersWaitingBehindAFullSpoolAreAlive(t *testing.T) {
	sc := spool.DefaultConfig()
	sc.Dir = t.TempDir()
	sc.SegmentBytes = 4 << 10
	sc.MaxBytes = 8 << 10
	sc.MinFreeBytes = 0
	sc.WhenFull = spool.WhenFullBlock
	sp, err := spool.Open(sc, spool.Settings{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer sp.Close()
	fl := &flow{}
	fl.clock.Store(time.Now().Add(-livenessSlack - time.Second).UnixNano())
	s := &sender{cfg: SenderConfig{BackoffMax: time.Second}, primary: newTestOutputState("web")}
	a := &Agent{st: newStatusTracker(time.Now())}
	a.running = []*flowRuntime{{cfg: FlowConfig{Name: "main"}, flow: fl, sender: s, spool: sp}}
	require.ErrorContains(t, a.Alive(), "its timers have not ticked")

	// Fill the spool until an Append waits for room.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if _, err := sp.Append(ctx, make([]byte, 1000)); err != nil {
				return
			}
		}
	}()
	require.Eventually(t, func() bool { return sp.Stats().BlockedAppends > 0 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, a.Alive(), "a source paused by a full spool is waiting correctly")
	cancel()
	<-done
}

// failingMapper is a destination whose shard map never comes (ListShards
// failing: credentials, network).
type failingMapper struct{ calls atomic.Int64 }

func (m *failingMapper) ShardMap(context.Context) (*aggregate.ShardMap, error) {
	m.calls.Add(1)
	return nil, errors.New("ListShards: access denied")
}

// A flow waiting for its destination's first shard map holds its lock (the
// records wait unread), so its timers cannot tick: that is waiting
// correctly, retried and logged, not a stuck pipeline for the watchdog to
// kill (a restart would only wait again).
func TestAlive_FlowWaitingForTheShardMapIsAlive(t *testing.T) {
	fl, sp := newTestFlow(t, spool.SyncInterval, time.Hour)
	fl.cfg.Sender.BackoffInitial, fl.cfg.Sender.BackoffMax = time.Millisecond, 5*time.Millisecond
	mapper := &failingMapper{}
	fl.useShardMap(mapper)
	s := &sender{cfg: SenderConfig{BackoffMax: time.Second}, primary: newTestOutputState("stream")}
	a := &Agent{st: newStatusTracker(time.Now())}
	a.running = []*flowRuntime{{cfg: FlowConfig{Name: "main"}, flow: fl, sender: s, spool: sp}}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	emit := fl.emitFor("src", nil, newMetrics().source("src"))
	go func() { done <- emit(ctx, source.Record{Data: []byte("x")}) }()
	require.Eventually(t, func() bool { return mapper.calls.Load() >= 3 }, 10*time.Second, time.Millisecond)
	fl.clock.Store(time.Now().Add(-livenessSlack - time.Second).UnixNano()) // the timers wait for the flow's lock
	require.NoError(t, a.Alive(), "a flow waiting for its shard map is waiting correctly")

	cancel()
	require.Error(t, <-done)
	require.ErrorContains(t, a.Alive(), "its timers have not ticked", "once the wait is over, stale timers are stuck again")
}
