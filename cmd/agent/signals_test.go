package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newTestHandler(now *time.Time) (*signalHandler, context.Context, *bytes.Buffer, *[]int, *int) {
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	var exits []int
	cleanups := 0
	h := &signalHandler{signalOptions: signalOptions{
		log:        slog.New(slog.DiscardHandler),
		stderr:     &stderr,
		beforeExit: func() { cleanups++ },
		exit:       func(code int) { exits = append(exits, code) },
		now:        func() time.Time { return *now },
	}, cancel: cancel}
	return h, ctx, &stderr, &exits, &cleanups
}

func TestSignals_SIGHUPNeverStops(t *testing.T) {
	now := time.Unix(1000, 0)
	h, ctx, _, exits, _ := newTestHandler(&now)
	var logs bytes.Buffer
	h.log = slog.New(slog.NewTextHandler(&logs, nil))
	for range 3 {
		h.handle(syscall.SIGHUP, now)
		now = now.Add(2 * time.Second)
	}
	require.NoError(t, ctx.Err(), "SIGHUP must not start the shutdown")
	require.Empty(t, *exits)
	require.Contains(t, logs.String(), "SIGHUP ignored")
	// A SIGHUP after a stop signal is no "second" signal either.
	h.handle(syscall.SIGTERM, now)
	now = now.Add(2 * time.Second)
	h.handle(syscall.SIGHUP, now)
	require.Error(t, ctx.Err())
	require.Empty(t, *exits)
}

func TestSignals_SameRequestDeliveredTwiceIsOneGracefulShutdown(t *testing.T) {
	now := time.Unix(1000, 0)
	h, ctx, stderr, exits, _ := newTestHandler(&now)
	h.handle(syscall.SIGTERM, now)
	require.Error(t, ctx.Err(), "the first signal starts the shutdown")
	// GNU timeout: the process, then its process group.
	now = now.Add(time.Millisecond)
	h.handle(syscall.SIGTERM, now)
	now = now.Add(signalCoalesce - 2*time.Millisecond)
	h.handle(syscall.SIGINT, now)
	require.Empty(t, *exits, "signals within %s of the first are the same request", signalCoalesce)
	require.NotContains(t, stderr.String(), "second signal")
}

func TestSignals_ALaterSecondSignalExitsAtOnce(t *testing.T) {
	now := time.Unix(1000, 0)
	h, ctx, stderr, exits, cleanups := newTestHandler(&now)
	var logs bytes.Buffer
	h.log = slog.New(slog.NewJSONHandler(&logs, nil))
	h.hint = "press again"
	h.handle(syscall.SIGINT, now)
	require.Error(t, ctx.Err())
	require.Contains(t, stderr.String(), "press again")
	now = now.Add(signalCoalesce)
	h.handle(syscall.SIGINT, now)
	require.Equal(t, []int{exitFailed}, *exits)
	require.Equal(t, 1, *cleanups, "the temporary state is removed before the exit")
	require.NotContains(t, stderr.String(), "second signal", "the forced exit is logged, in the log's format")
	require.Contains(t, logs.String(), `"level":"WARN","msg":"second signal, exiting now","signal":"interrupt"`)
}

func TestSignals_WatchAndStop(t *testing.T) {
	ctx, stop := watchSignals(signalOptions{stderr: &bytes.Buffer{}})
	require.NoError(t, ctx.Err())
	stop()
	stop() // idempotent
	require.Error(t, ctx.Err())
}

// Signals that came before the command handed its options over (while the
// program started and read its configuration) are held, then handled with
// those options: the stop logged by the configured logger, the SIGHUP
// reloading.
func TestSignals_HeldUntilWatchThenHandled(t *testing.T) {
	ch := make(chan os.Signal, 8)
	ch <- syscall.SIGHUP
	ch <- syscall.SIGTERM
	ch <- syscall.SIGTERM // the same request delivered twice (timeout(1))
	var early, logs syncBuffer
	exits := make(chan int, 1)
	w := catchSignalsOn(ch, signalOptions{log: slog.New(slog.NewTextHandler(&early, nil)), exit: func(c int) { exits <- c }})
	require.Never(t, func() bool { return early.String() != "" }, 100*time.Millisecond, 10*time.Millisecond, "nothing is handled before watch")
	reloads := make(chan struct{}, 2)
	ctx, stop := w.watch(signalOptions{log: slog.New(slog.NewJSONHandler(&logs, nil)), exit: func(c int) { exits <- c },
		reload: func() { reloads <- struct{}{} }})
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a held SIGTERM did not start the shutdown")
	}
	require.Len(t, reloads, 1, "the held SIGHUP reloads")
	require.Contains(t, logs.String(), `"msg":"stopping: delivering what was read","signal":"terminated"`)
	require.Empty(t, exits, "two signals that came together are one request")
	require.Empty(t, early.String())
}

// A start that hangs can still be ended: before watch, a second stop signal
// at least signalCoalesce after the first exits at once, logged by the
// logger given to catchSignals.
func TestSignals_SecondSignalBeforeWatchExits(t *testing.T) {
	ch := make(chan os.Signal, 8)
	var early syncBuffer
	exits := make(chan int, 1)
	var calls atomic.Int64
	clock := func() time.Time { return time.Unix(1000, 0).Add(time.Duration(calls.Add(1)) * signalCoalesce) }
	w := catchSignalsOn(ch, signalOptions{log: slog.New(slog.NewJSONHandler(&early, nil)), exit: func(c int) { exits <- c }, now: clock})
	ch <- syscall.SIGINT
	ch <- syscall.SIGINT
	select {
	case c := <-exits:
		require.Equal(t, exitFailed, c)
	case <-time.After(10 * time.Second):
		t.Fatal("a second signal before watch did not exit")
	}
	require.Contains(t, early.String(), `"level":"WARN","msg":"second signal, exiting now","signal":"interrupt"`)
	_, stop := w.watch(signalOptions{})
	stop()
}

// syncBuffer is a bytes.Buffer safe for the watcher's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Commands without a log (agent top, agent tap) still say why they exit.
func TestSignals_SecondSignalWithoutLoggerToldOnStderr(t *testing.T) {
	var stderr bytes.Buffer
	var exits []int
	h := signalHandler{signalOptions: signalOptions{stderr: &stderr, exit: func(c int) { exits = append(exits, c) }}, cancel: func() {}}
	h.defaults()
	now := time.Unix(1000, 0)
	h.handle(syscall.SIGINT, now)
	h.handle(syscall.SIGINT, now.Add(signalCoalesce))
	require.Equal(t, []int{exitFailed}, exits)
	require.Equal(t, "agent: second signal, exiting now\n", stderr.String())
}
