package main

import (
	"bytes"
	"context"
	"log/slog"
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
		h.handle(syscall.SIGHUP)
		now = now.Add(2 * time.Second)
	}
	require.NoError(t, ctx.Err(), "SIGHUP must not start the shutdown")
	require.Empty(t, *exits)
	require.Contains(t, logs.String(), "SIGHUP ignored")
	// A SIGHUP after a stop signal is no "second" signal either.
	h.handle(syscall.SIGTERM)
	now = now.Add(2 * time.Second)
	h.handle(syscall.SIGHUP)
	require.Error(t, ctx.Err())
	require.Empty(t, *exits)
}

func TestSignals_SameRequestDeliveredTwiceIsOneGracefulShutdown(t *testing.T) {
	now := time.Unix(1000, 0)
	h, ctx, stderr, exits, _ := newTestHandler(&now)
	h.handle(syscall.SIGTERM)
	require.Error(t, ctx.Err(), "the first signal starts the shutdown")
	// GNU timeout: the process, then its process group.
	now = now.Add(time.Millisecond)
	h.handle(syscall.SIGTERM)
	now = now.Add(signalCoalesce - 2*time.Millisecond)
	h.handle(syscall.SIGINT)
	require.Empty(t, *exits, "signals within %s of the first are the same request", signalCoalesce)
	require.NotContains(t, stderr.String(), "second signal")
}

func TestSignals_ALaterSecondSignalExitsAtOnce(t *testing.T) {
	now := time.Unix(1000, 0)
	h, ctx, stderr, exits, cleanups := newTestHandler(&now)
	h.hint = "press again"
	h.handle(syscall.SIGINT)
	require.Error(t, ctx.Err())
	require.Contains(t, stderr.String(), "press again")
	now = now.Add(signalCoalesce)
	h.handle(syscall.SIGINT)
	require.Equal(t, []int{exitFailed}, *exits)
	require.Equal(t, 1, *cleanups, "the temporary state is removed before the exit")
	require.Contains(t, stderr.String(), "second signal, exiting now")
}

func TestSignals_WatchAndStop(t *testing.T) {
	ctx, stop := watchSignals(signalOptions{stderr: &bytes.Buffer{}})
	require.NoError(t, ctx.Err())
	stop()
	stop() // idempotent
	require.Error(t, ctx.Err())
}
