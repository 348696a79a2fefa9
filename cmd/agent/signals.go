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
	// showHint, when set, says at the signal whether hint is printed: not
	// by a background job (`agent tail ... &` stopped by kill), whose
	// write to the terminal would stop it under `stty tostop`, and whose
	// stop was no Ctrl-C.
	showHint func() bool
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
	// unlogged: no logger was given (agent top, agent tap): the forced
	// exit is told on stderr in plain text.
	unlogged bool
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
	return catchSignals(o).watch(o)
}

// earlySignals catches the signals of the commands that run a pipeline
// (agent run, agent tail) from the first instruction of main, and those
// that came before it (package earlysignal): without it a SIGTERM that
// comes while the program starts or reads its configuration kills the
// process (status 143, nothing logged). Nil in tests that call run in the
// process.
var earlySignals *signalWatcher

// signalWatcher receives SIGINT, SIGTERM and SIGHUP from catchSignals on.
// Until watch hands it the command's options (its logger, built from the
// configuration, and what SIGHUP does) it holds them, with the time they
// came, and watch handles them then, in order: a stop signal that came
// while the agent was starting is the graceful shutdown, logged as the
// configuration says. A later second stop signal exits at once even
// before that (logged with the options given to catchSignals), so a start
// that hangs (a configuration file on a dead network mount) can still be
// ended.
type signalWatcher struct {
	ch    chan os.Signal
	start chan *signalHandler
	stop  chan struct{}
	done  chan struct{}
}

type heldSignal struct {
	sig os.Signal
	at  time.Time
}

func (o *signalOptions) defaults() {
	if o.exit == nil {
		o.exit = os.Exit
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
		o.unlogged = true
	}
}

// catchSignals starts catching the signals; o's logger, exit and clock
// serve until watch is called.
func catchSignals(o signalOptions) *signalWatcher {
	return catchSignalsOn(make(chan os.Signal, 8), o)
}

// catchSignalsOn is catchSignals on ch, which may already hold signals
// (earlysignal.Caught: they came while the program started).
func catchSignalsOn(ch chan os.Signal, o signalOptions) *signalWatcher {
	o.defaults()
	w := &signalWatcher{ch: ch, start: make(chan *signalHandler), stop: make(chan struct{}), done: make(chan struct{})}
	signal.Notify(w.ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go w.loop(o)
	return w
}

func (w *signalWatcher) loop(early signalOptions) {
	defer close(w.done)
	var h *signalHandler
	var held []heldSignal
	var firstStop time.Time
	for {
		select {
		case s := <-w.ch:
			if h != nil {
				h.handle(s, h.now())
				continue
			}
			at := early.now()
			if s != syscall.SIGHUP {
				if firstStop.IsZero() {
					firstStop = at
				} else if at.Sub(firstStop) >= signalCoalesce {
					early.log.Warn("second signal, exiting now", "signal", s.String())
					early.exit(exitFailed)
					continue
				}
			}
			held = append(held, heldSignal{sig: s, at: at})
		case h = <-w.start:
			for _, s := range held {
				h.handle(s.sig, s.at)
			}
			held = nil
		case <-w.stop:
			return
		}
	}
}

// watch hands the command's options to w and returns the context the first
// stop signal cancels (one that came before is handled now) and the
// function that stops watching. Called once; a nil w catches the signals
// from now on.
func (w *signalWatcher) watch(o signalOptions) (context.Context, func()) {
	o.defaults()
	if w == nil {
		w = catchSignals(o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.start <- &signalHandler{signalOptions: o, cancel: cancel}
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(w.ch)
			close(w.stop)
			<-w.done
			cancel()
		})
	}
}

type signalHandler struct {
	signalOptions
	cancel context.CancelFunc
	first  time.Time // when the first stop signal arrived; zero before
}

// handle acts on signal s, which came at now.
func (h *signalHandler) handle(s os.Signal, now time.Time) {
	switch {
	case s == syscall.SIGHUP && h.reload != nil:
		h.reload()
	case s == syscall.SIGHUP:
		h.log.Warn("SIGHUP ignored: the agent keeps running (only agent run reloads its configuration)")
	case h.first.IsZero():
		h.first = now
		h.log.Info("stopping: delivering what was read", "signal", s.String())
		if h.hint != "" && (h.showHint == nil || h.showHint()) {
			fmt.Fprintln(h.stderr, h.hint)
		}
		h.cancel()
	case now.Sub(h.first) < signalCoalesce:
		h.log.Debug("signal ignored: the same stop request delivered again", "signal", s.String(), "after", now.Sub(h.first))
	default:
		if h.unlogged {
			fmt.Fprintln(h.stderr, "agent: second signal, exiting now")
		} else {
			h.log.Warn("second signal, exiting now", "signal", s.String())
		}
		if h.beforeExit != nil {
			h.beforeExit()
		}
		h.exit(exitFailed)
	}
}
