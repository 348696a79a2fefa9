package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// signalCoalesce is how long after the first stop signal further stop
// signals count as the same request. GNU timeout (and `kill 0`, a service
// manager signalling the whole control group) delivers its signal twice, to
// the process and to its process group: both arrive within microseconds,
// and must start one graceful shutdown, not the immediate exit. A person who
// wants the agent gone presses Ctrl-C again after seeing it stop: that takes
// longer than half a second.
const signalCoalesce = 500 * time.Millisecond

// signalOptions tune watchSignals.
type signalOptions struct {
	log    *slog.Logger
	stderr io.Writer
	// hint, when set, is printed on stderr at the first stop signal (the
	// interactive `agent tail` tells how to force the exit).
	hint string
	// beforeExit runs before the immediate exit of a second signal (it
	// removes agent tail's temporary state directory).
	beforeExit func()
	// exit ends the process (os.Exit; tests replace it).
	exit func(code int)
	// now is the clock (tests replace it).
	now func() time.Time
	// reload, when set, is called at SIGHUP (agent run reloads its
	// configuration); without it SIGHUP is logged and ignored.
	reload func()
}

// watchSignals returns a context cancelled by the first SIGINT or SIGTERM:
// the graceful shutdown. A stop signal that arrives at least signalCoalesce
// after the first exits at once with exitFailed (what the spool accepted is
// on disk per its sync policy, and file offsets were only committed for
// durable records); one that arrives sooner is the same request delivered
// twice and is ignored. SIGHUP never stops the agent: it calls o.reload,
// or is logged and ignored without one. The returned function stops
// watching.
func watchSignals(o signalOptions) (context.Context, func()) {
	if o.exit == nil {
		o.exit = os.Exit
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h := signalHandler{signalOptions: o, cancel: cancel}
		for {
			select {
			case s := <-ch:
				h.handle(s)
			case <-stop:
				return
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(stop)
			wg.Wait()
			cancel()
		})
	}
}

type signalHandler struct {
	signalOptions
	cancel context.CancelFunc
	first  time.Time // when the first stop signal arrived; zero before
}

func (h *signalHandler) handle(s os.Signal) {
	now := h.now()
	switch {
	case s == syscall.SIGHUP && h.reload != nil:
		h.reload()
	case s == syscall.SIGHUP:
		h.log.Warn("SIGHUP ignored: the agent keeps running (only agent run reloads its configuration)")
	case h.first.IsZero():
		h.first = now
		h.log.Info("stopping: delivering what was read", "signal", s.String())
		if h.hint != "" {
			fmt.Fprintln(h.stderr, h.hint)
		}
		h.cancel()
	case now.Sub(h.first) < signalCoalesce:
		h.log.Debug("signal ignored: the same stop request delivered again", "signal", s.String(), "after", now.Sub(h.first))
	default:
		fmt.Fprintln(h.stderr, "agent: second signal, exiting now")
		if h.beforeExit != nil {
			h.beforeExit()
		}
		h.exit(exitFailed)
	}
}
