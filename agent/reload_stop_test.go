package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
)

// probe watches the sources of type probe built with its id: how many
// times they ran, and hooks that hold their New and their return.
type probe struct {
	runs atomic.Int32
	// building is closed when New is called; New then waits for proceed
	// (when not nil).
	building, proceed chan struct{}
	// stopping is closed when Run's ctx ends; Run then waits for release
	// (when not nil) before it returns, as a source slow to stop.
	stopping, release chan struct{}
	once              sync.Once
}

type probeConfig struct {
	ID string `yaml:"id"`
}

func (c *probeConfig) Validate() error { return nil }

type probeSource struct {
	name string
	p    *probe
}

func (s *probeSource) Name() string { return s.name }

func (s *probeSource) Run(ctx context.Context, _ source.Emit) error {
	s.p.runs.Add(1)
	<-ctx.Done()
	if s.p.stopping != nil {
		s.p.once.Do(func() { close(s.p.stopping) })
	}
	if s.p.release != nil {
		<-s.p.release
	}
	return nil
}

// probeComponents are testComponents with the source type probe, whose
// sources report to probes by their config's id.
func probeComponents(probes map[string]*probe) Components {
	c := testComponents
	c.Sources = append(append([]source.Type(nil), c.Sources...), source.Type{
		Name:          "probe",
		DefaultConfig: func() any { return &probeConfig{} },
		New: func(cfg any, set source.Settings) (source.Source, error) {
			p := probes[cfg.(*probeConfig).ID]
			if p.building != nil {
				close(p.building)
				<-p.proceed
			}
			return &probeSource{name: set.Name, p: p}, nil
		},
	})
	return c
}

// startProbeAgent runs an agent of the flow gone (source g) until the
// returned cancel; reload2 is the configuration that removes gone and adds
// the flow new (source n).
func startProbeAgent(t *testing.T, probes map[string]*probe) (a *Agent, reload2 Config, cancel context.CancelFunc, done chan error) {
	comps := probeComponents(probes)
	dir := t.TempDir()
	config := func(src, flow string) Config {
		cfg, err := ParseConfig("t.yaml", fmt.Appendf(nil, `state_dir: %s
admin: {listen: "off"}
shutdown_timeout: 20s
sources:
  - {name: %s, type: probe, probe: {id: %s}}
outputs:
  - {name: bh, type: blackhole}
flows:
  - {name: %s, sources: [%s], output: bh}
`, filepath.Join(dir, "state"), src, src, flow, src), noEnv, comps)
		require.NoError(t, err)
		return cfg
	}
	a, err := New(config("g", "gone"), Settings{Components: comps, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done = make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool { return a.state.Load() == stateRunning && probes["g"].runs.Load() == 1 }, 20*time.Second, time.Millisecond)
	return a, config("n", "new"), cancel, done
}

func waitRun(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
}

// A stop (SIGTERM) that arrives while a reload stops the flows it
// replaces does not let the new flows' sources start: the shutdown that
// follows would only stop them, after they opened their files or took
// their listeners and read records to drain. The reload is held in the
// stop of the removed flow's source (slow to return) until the stop
// arrives.
func TestReload_StopWhileOldFlowsStopKeepsNewSourcesFromStarting(t *testing.T) {
	probes := map[string]*probe{
		"g": {stopping: make(chan struct{}), release: make(chan struct{})},
		"n": {},
	}
	defer close(probes["g"].release)
	a, next, cancel, done := startProbeAgent(t, probes)
	defer cancel()

	reloaded := make(chan error, 1)
	go func() {
		_, err := a.Reload(t.Context(), next)
		reloaded <- err
	}()
	select {
	case <-probes["g"].stopping: // the reload waits for g to return
	case <-time.After(20 * time.Second):
		t.Fatal("the reload did not stop the flow gone")
	}
	cancel()
	waitRun(t, done)
	require.NoError(t, <-reloaded, "applied: the old flow had stopped")
	require.Zero(t, probes["n"].runs.Load(), "the new flow's source ran")
}

// A stop that arrives while a reload builds its new parts, before anything
// stopped, undoes the reload: it answers ErrNotRunning and the shutdown
// stops the pipeline as it was, the new sources never run.
func TestReload_StopWhileBuildingUndoesTheReload(t *testing.T) {
	probes := map[string]*probe{
		"g": {},
		"n": {building: make(chan struct{}), proceed: make(chan struct{})},
	}
	a, next, cancel, done := startProbeAgent(t, probes)
	defer cancel()

	reloaded := make(chan error, 1)
	go func() {
		_, err := a.Reload(t.Context(), next)
		reloaded <- err
	}()
	select {
	case <-probes["n"].building:
	case <-time.After(20 * time.Second):
		t.Fatal("the reload did not build the source n")
	}
	cancel()
	close(probes["n"].proceed)
	waitRun(t, done)
	require.ErrorIs(t, <-reloaded, ErrNotRunning)
	require.Zero(t, probes["n"].runs.Load(), "the new flow's source ran")
	require.Equal(t, int32(1), probes["g"].runs.Load())
}
