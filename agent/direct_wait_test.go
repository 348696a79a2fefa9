package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// The direct queue's policy when it is full (issues 9 and 15): while the
// destination is healthy, the flow waits for room (its sources replay, so
// slowing them costs nothing) instead of writing, fsyncing and reading back
// the aggregate through the spool; it spills only once the destination
// fails, is throttled, makes no progress or the sender stops.

// emitUntil emits n lines of 100 bytes from file "A" until ctx ends,
// returning the end offset of the last one accepted and emit's error.
func emitUntil(ctx context.Context, emit source.Emit, n int) (int64, error) {
	var off int64
	for i := range n {
		if ctx.Err() != nil {
			return off, ctx.Err()
		}
		data := fmt.Appendf(nil, "line %04d %090d", i, 0)
		next := off + int64(len(data)) + 1
		if err := emit(ctx, source.Record{Data: data, Cursor: source.Cursor{FileID: "A", Start: off, Offset: next}}); err != nil {
			return off, err
		}
		off = next
	}
	return off, nil
}

// blockingOut blocks every Send until release is closed or its ctx ends
// (as real outputs do).
type blockingOut struct {
	release chan struct{}
	sends   atomic.Int64
}

func (o *blockingOut) Name() string                { return "blocking" }
func (o *blockingOut) Close(context.Context) error { return nil }
func (o *blockingOut) Send(ctx context.Context, _ outputs.Batch) error {
	o.sends.Add(1)
	select {
	case <-o.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestDirect_SlowHealthyDestination_FlowWaitsInsteadOfSpilling(t *testing.T) {
	out := newScripted("o", func(outputs.Batch) error { time.Sleep(10 * time.Millisecond); return nil })
	f, s, sp := directRig(t, out)
	f.direct.fullWait = time.Minute // a healthy destination is never waited out here
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()

	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	end := emitLines(t, emit, 3000) // ~300 aggregates of 1 KiB: the queue holds 64
	require.NoError(t, f.flushAll(t.Context()))
	require.Eventually(t, func() bool {
		f.commit(time.Now())
		off, _ := c.of("A")
		return off == end
	}, 20*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Positive(t, testutil.ToFloat64(f.metrics.directWait), "the queue was full: the flow waited")
	require.Zero(t, sp.Stats().Appended, "a slower but healthy destination spills nothing")
	require.Zero(t, testutil.ToFloat64(f.metrics.directFull))
	require.Equal(t, 3000, userRecordsIn(out))
}

func TestDirect_FailingDestination_SpillsAndDeliversAfterRecovery(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	out := newScripted("o", func(outputs.Batch) error {
		if down.Load() {
			return errors.New("503")
		}
		return nil
	})
	f, s, sp := directRig(t, out)
	f.direct.fullWait = time.Minute // only the failures may end the flow's waits
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()

	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	emitted := make(chan int64, 1)
	go func() {
		end, err := emitUntil(t.Context(), emit, 3000)
		if err == nil {
			err = f.flushAll(t.Context())
		}
		if err != nil {
			end = -1
		}
		emitted <- end
	}()
	var end int64
	select {
	case end = <-emitted:
		require.Positive(t, end)
	case <-time.After(30 * time.Second):
		t.Fatal("the flow waited for a failing destination instead of spilling")
	}
	require.Positive(t, sp.Stats().Appended, "undelivered aggregates went to the spool")
	down.Store(false)
	require.Eventually(t, func() bool {
		f.commit(time.Now())
		off, _ := c.of("A")
		return off == end && sp.Stats().Entries == 0
	}, 20*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.GreaterOrEqual(t, userRecordsIn(out), 3000)
}

// A destination whose sends hang (healthy as far as anyone knows) must not
// hold the flow for longer than fullWait per stall: the queue turns
// unhealthy and aggregates spill until a send succeeds again.
func TestDirect_StuckDestination_SpillsAfterTheWait(t *testing.T) {
	out := &blockingOut{release: make(chan struct{})}
	f, s, sp := directRig(t, out)
	f.direct.fullWait = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()

	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	start := time.Now()
	end := emitLines(t, emit, 3000)
	require.NoError(t, f.flushAll(t.Context()))
	require.Less(t, time.Since(start), 20*time.Second, "one wait per stall, not one per aggregate")
	require.Positive(t, testutil.ToFloat64(f.metrics.directFull), "the stuck queue's aggregates went to the spool")
	require.Positive(t, sp.Stats().Appended)

	close(out.release)
	require.Eventually(t, func() bool {
		f.commit(time.Now())
		off, _ := c.of("A")
		return off == end && sp.Stats().Entries == 0
	}, 20*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// A wait must not outlive its cause: the emit's context (sources stop at
// shutdown), the sender's (it stops, or is replaced at a reload) and the
// closing of the direct path each end it, long before fullWait.
func TestDirect_WaitForRoomEndsWithItsContextOrTheSender(t *testing.T) {
	for _, stop := range []string{"emit", "sender", "close"} {
		t.Run(stop, func(t *testing.T) {
			out := &blockingOut{release: make(chan struct{})}
			f, s, sp := directRig(t, out)
			f.direct.fullWait = time.Hour
			sctx, stopSender := context.WithCancel(t.Context())
			defer stopSender()
			done := make(chan error, 1)
			go func() { done <- s.run(sctx) }()

			var c commits
			emit := f.emitFor("src", &c, newMetrics().source("src"))
			ectx, stopEmit := context.WithCancel(t.Context())
			defer stopEmit()
			emitted := make(chan error, 1)
			go func() {
				_, err := emitUntil(ectx, emit, 1_000_000)
				emitted <- err
			}()
			require.Eventually(t, func() bool { return len(f.direct.ch) == directQueueLen && out.sends.Load() > 0 },
				20*time.Second, time.Millisecond, "the queue fills behind the blocked sends")
			waitedBefore := testutil.ToFloat64(f.metrics.directWait)
			switch stop {
			case "emit":
				stopEmit()
			case "sender":
				stopSender()
			case "close": // shutdown's flush, a reload swapping the sender
				f.closeDirect()
			}
			if stop != "emit" {
				require.Eventually(t, func() bool { return sp.Stats().Appended > 0 },
					15*time.Second, time.Millisecond, "the waiting aggregate went to the spool")
				stopEmit()
			}
			select {
			case <-emitted:
			case <-time.After(15 * time.Second):
				t.Fatal("the wait for room outlived its cause")
			}
			if stop != "sender" {
				stopSender()
			}
			require.NoError(t, <-done)
			require.Less(t, testutil.ToFloat64(f.metrics.directWait)-waitedBefore, 60.0)
			s.drainDirect(t.Context())
			require.NoError(t, sp.Sync())
			f.commit(time.Now())
			require.True(t, f.direct.bad.Load(), "a stopped sender or a closed path leaves the path unhealthy")
		})
	}
}

// End to end: a file larger than the direct queue, an HTTP destination
// slower than the reader but healthy. Nothing goes through the spool
// (agent_spool_appended_total stays 0) and every line arrives once.
func TestAgent_SlowHealthyHTTPDestination_NothingSpilled(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	const n = 3000 // ~300 aggregates of 1 KiB
	writeNumberedLog(t, log, n)
	var mu sync.Mutex
	counts := map[int]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(5 * time.Millisecond) // slower than the file reader
		sc := bufio.NewScanner(bytes.NewReader(body))
		mu.Lock()
		defer mu.Unlock()
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 {
				if k, err := strconv.Atoi(f[1]); err == nil {
					counts[k]++
				}
			}
		}
	}))
	defer srv.Close()
	cfg, err := ParseConfig("t.yaml", fmt.Appendf(nil, `
state_dir: %s
admin: {listen: "off"}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: sink
    type: http
    http: {url: %q, compression: none, encoding: text}
flows:
  - name: main
    sources: [app]
    output: sink
    aggregation: {max_bytes: 1KiB}
    sender: {concurrency: 2, batch_max_records: 4}
`, filepath.Join(dir, "state"), log, srv.URL), noEnv, testComponents)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(counts) == n
	}, 30*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Positive(t, counterValue(t, a, "agent_direct_queue_wait_seconds_total", map[string]string{"flow": "main"}), "the reader outran the destination")
	require.Zero(t, counterValue(t, a, "agent_spool_appended_total", map[string]string{"flow": "main"}), "nothing spilled")
	mu.Lock()
	defer mu.Unlock()
	for k, v := range counts {
		require.Equal(t, 1, v, "line %d", k)
	}
}

// Sends that each take longer than fullWait but succeed (a Kinesis rate
// limiter holding them) are progress: the flow goes on waiting for room
// instead of spilling.
func TestDirect_SlowSucceedingSendsAreProgress(t *testing.T) {
	q := newDirectQueue()
	q.fullWait = 200 * time.Millisecond
	for range directQueueLen {
		tk, _ := q.offer(t.Context(), &aggregate.Aggregate{Body: []byte("x"), Count: 1}, 0)
		require.NotNil(t, tk)
	}
	stop := make(chan struct{})
	bumped := make(chan struct{})
	go func() { // a Send succeeds every few milliseconds, but the queue stays full
		defer close(bumped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				q.note(nil)
			}
		}
	}()
	got := make(chan *ticket, 1)
	go func() {
		tk, _ := q.offer(t.Context(), &aggregate.Aggregate{Body: []byte("y"), Count: 1}, 0)
		got <- tk
	}()
	time.Sleep(5 * q.fullWait) // several windows, each with progress
	select {
	case tk := <-got:
		t.Fatalf("the wait ended (ticket %v) although Sends succeeded", tk)
	default:
	}
	<-q.ch // a worker takes an item: room
	select {
	case tk := <-got:
		require.NotNil(t, tk, "queued once there was room")
	case <-time.After(15 * time.Second):
		t.Fatal("no room taken")
	}
	close(stop)
	<-bumped
	require.False(t, q.bad.Load())
	for len(q.ch) > 0 {
		<-q.ch
	}
}
