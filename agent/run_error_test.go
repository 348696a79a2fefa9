package agent

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/spool"
)

type failingSource struct{}

func (failingSource) Name() string { return "bad" }
func (failingSource) Run(context.Context, source.Emit) error {
	return errors.New("cannot read /var/log/app: permission denied")
}

// Regression: a source that fails calls fail(err) and then, having been the last
// source, closes srcDone. Both select cases are ready and Go picks one at
// random; when srcDone wins, waitDrained later swallows the error from
// `fatal` (logs it) and run returns nil: the daemon exits 0 (systemd's
// Restart=on-failure does not restart it), and in --once mode `agent tail
// --once` reports success and waitDrained stops draining early.
func TestRun_SourceErrorIsReturned(t *testing.T) {
	for _, once := range []bool{false, true} {
		nilReturns := 0
		const runs = 20
		for range runs {
			f, sp := newTestFlow(t, spool.SyncInterval, 10*time.Millisecond)
			m := newMetrics()
			out := newScripted("o", ok)
			scfg := DefaultFlowConfig().Sender
			s := &sender{flow: "f", cfg: scfg, spool: sp, dlq: f.dlq, log: slog.New(slog.DiscardHandler), metrics: m.sender("f"),
				primary: &outputState{out: out, metrics: m.output("o")}}
			cfg := DefaultConfig()
			cfg.ShutdownTimeout = 100 * time.Millisecond
			a := &Agent{cfg: cfg, set: Settings{Once: once,
				// sd_notify taking a moment: both select cases are ready
				// by the time run reaches its select.
				OnReady: func() { time.Sleep(20 * time.Millisecond) }}, log: slog.New(slog.DiscardHandler), m: m}
			a.flows = []*flowRuntime{{cfg: f.cfg, sources: []source.Source{failingSource{}}, flow: f, sender: s, spool: sp}}
			if err := a.run(t.Context(), f.dlq); err == nil {
				nilReturns++
			}
		}
		require.Zero(t, nilReturns, "once=%v: run returned nil after a source failed in %d of %d runs", once, nilReturns, runs)
	}
}
