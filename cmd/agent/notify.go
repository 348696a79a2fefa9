package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/internal/sdnotify"
)

// statusEvery is how often STATUS= is sent to systemd (what `systemctl
// status` shows).
const statusEvery = 2 * time.Second

// systemd speaks to the service manager (Type=notify): READY=1 once every
// source and output started, STATUS= with the rates and the backlog,
// WATCHDOG=1 while the pipeline is alive (WatchdogSec=), STOPPING=1 when the
// shutdown begins. Without $NOTIFY_SOCKET it does nothing.
type systemd struct {
	log      *slog.Logger
	watchdog time.Duration // 0: off
	stop     chan struct{}
	done     chan struct{}

	mu         sync.Mutex
	a          *agent.Agent
	started    bool
	isStopping bool
	lastStuck  time.Time
}

func newSystemd(log *slog.Logger) *systemd {
	s := &systemd{log: log, stop: make(chan struct{}), done: make(chan struct{})}
	if d, ok := sdnotify.WatchdogInterval(); ok {
		s.watchdog = d
	}
	return s
}

func (s *systemd) send(state string) {
	if err := sdnotify.Send(state); err != nil {
		s.log.Debug("cannot notify systemd", "state", state, "error", err)
	}
}

// ready is the agent's OnReady: the pipeline a runs.
func (s *systemd) ready(a *agent.Agent) {
	s.mu.Lock()
	s.a = a
	start := !s.started && sdnotify.Enabled()
	s.started = s.started || start
	s.mu.Unlock()
	s.send("READY=1")
	if start {
		go s.loop()
	}
}

// stopping reports that the shutdown began.
func (s *systemd) stopping() {
	s.mu.Lock()
	first := !s.isStopping
	s.isStopping = true
	s.mu.Unlock()
	if first {
		s.send("STOPPING=1\nSTATUS=stopping: delivering what was read")
	}
}

// reloading reports that a configuration reload began: the next pipeline's
// ready sends READY=1 again.
func (s *systemd) reloading() {
	if err := sdnotify.Reloading(); err != nil {
		s.log.Debug("cannot notify systemd", "state", "RELOADING=1", "error", err)
	}
}

// close ends the loop.
func (s *systemd) close() {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	close(s.stop)
	if started {
		<-s.done
	}
}

func (s *systemd) loop() {
	defer close(s.done)
	st := time.NewTicker(statusEvery)
	defer st.Stop()
	var wd <-chan time.Time
	if s.watchdog > 0 {
		// sd_watchdog_enabled(3): ping at half the interval.
		t := time.NewTicker(s.watchdog / 2)
		defer t.Stop()
		wd = t.C
		s.ping()
	}
	s.status()
	for {
		select {
		case <-s.stop:
			return
		case <-st.C:
			s.status()
		case <-wd:
			s.ping()
		}
	}
}

// ping sends WATCHDOG=1 if the pipeline is alive. While it stops, the
// shutdown's own deadline (shutdown_timeout) bounds it: pings go on.
func (s *systemd) ping() {
	s.mu.Lock()
	a, stopping := s.a, s.isStopping
	s.mu.Unlock()
	if a != nil && !stopping {
		if err := a.Alive(); err != nil {
			s.mu.Lock()
			logIt := time.Since(s.lastStuck) > 10*time.Second
			if logIt {
				s.lastStuck = time.Now()
			}
			s.mu.Unlock()
			if logIt {
				s.log.Error("pipeline stuck: not pinging the systemd watchdog", "error", err)
			}
			return
		}
	}
	s.send("WATCHDOG=1")
}

func (s *systemd) status() {
	s.mu.Lock()
	a, stopping := s.a, s.isStopping
	s.mu.Unlock()
	if a == nil || stopping {
		return
	}
	s.send("STATUS=" + systemdStatus(a.Status()))
}

// statusLine summarises st in one line.
func systemdStatus(st agent.Status) string {
	var in, out float64
	var entries, bytes int64
	var oldest float64
	for _, f := range st.Flows {
		in += f.RecordsPerSec
		entries += f.Spool.Entries
		bytes += f.Spool.Bytes
		oldest = max(oldest, f.Spool.OldestAgeSeconds)
	}
	for _, o := range st.Outputs {
		out += o.RecordsPerSec
	}
	line := fmt.Sprintf("%s; %.0f records/s in, %.0f records/s out; backlog %d entries, %s, oldest %s",
		st.State, in, out, entries, humanBytes(float64(bytes)), (time.Duration(oldest) * time.Second).String())
	if !st.Ready {
		line += "; not ready: " + st.NotReady
	}
	return line
}

// watchStop calls f once ctx ends.
func watchStop(ctx context.Context, f func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-ctx.Done():
			f()
		case <-done:
		}
	}()
	return func() { close(done); <-finished }
}
