// Package agent wires sources, aggregation, the spool and outputs into the
// running daemon: configuration, lifecycle, the sender (retry, backoff,
// failover, dead-letter), checkpoints and the admin endpoint.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/agent/checkpoint"
	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

// ErrDeadLettered is returned by Run in once mode when records went to the
// dead-letter file.
var ErrDeadLettered = errors.New("agent: some records were written to the dead-letter file")

// Settings are set in code, not in the config file.
type Settings struct {
	Logger  *slog.Logger
	Version string
	// Commit is the VCS revision built (agent_build_info).
	Commit string
	// Once makes Run return when every source reached its end and everything
	// read was delivered (agent tail --once).
	Once bool
	// Stdout is where stdout outputs write (default os.Stdout).
	Stdout io.Writer
	// Stdin is what stdin sources without a path read (default os.Stdin).
	Stdin io.Reader
	// OnReady is called once the pipeline runs (sd_notify READY=1).
	OnReady func()
	// Components are the source and output types the config may name.
	Components Components
	// Admin, when set, is the admin endpoint to serve this pipeline on (it
	// outlives the Agent: `agent run` keeps it across reloads); otherwise
	// Run starts its own on admin.listen.
	Admin *Admin
}

// Agent is a configured pipeline. Run it once.
type Agent struct {
	cfg Config
	set Settings
	log *slog.Logger
	m   *metrics

	outputs map[string]outputs.Output
	flows   []*flowRuntime
	admin   *Admin
	// closeBy is when closing the outputs must end (the end of shutdown's
	// margin); zero before a shutdown.
	closeBy time.Time
	// stopped is closed when Run returns: what streams from this pipeline
	// (agent tap) on an endpoint that outlives it ends then.
	stopped chan struct{}

	// What status, readiness and the watchdog read (status.go).
	state    atomic.Int32
	stMu     sync.Mutex
	running  []*flowRuntime
	st       *statusTracker
	dlqCount atomic.Pointer[atomic.Int64]
}

type flowRuntime struct {
	cfg     FlowConfig
	sources []source.Source
	flow    *flow
	sender  *sender
	spool   *spool.Spool
	tap     tap // agent tap (tap.go)
}

// New validates cfg and builds outputs and sources. It does no I/O besides
// reading TLS files; Run opens the spool and state.
func New(cfg Config, set Settings) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	for i, s := range cfg.Sources {
		if _, ok := set.Components.Source(s.Type); !ok {
			errs = append(errs, fmt.Errorf("sources[%d].type: %q is not compiled in (want %s)", i, s.Type, orList(set.Components.SourceNames())))
		}
	}
	for i, o := range cfg.Outputs {
		if _, ok := set.Components.Output(o.Type); !ok {
			errs = append(errs, fmt.Errorf("outputs[%d].type: %q is not compiled in (want %s)", i, o.Type, orList(set.Components.OutputNames())))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	if set.Stdout == nil {
		set.Stdout = os.Stdout
	}
	if cfg.Spool.Dir == "" {
		cfg.Spool.Dir = filepath.Join(cfg.StateDir, "spool")
	}
	a := &Agent{cfg: cfg, set: set, log: set.Logger, m: newMetrics(), outputs: map[string]outputs.Output{}, st: newStatusTracker(time.Now()), stopped: make(chan struct{})}
	a.m.buildInfo(set.Version, set.Commit)
	return a, nil
}

func (a *Agent) buildOutput(oc OutputConfig) (outputs.Output, error) {
	t, _ := a.set.Components.Output(oc.Type) // New checked it is there
	o, err := t.New(oc.Name, oc.Config, outputs.Settings{
		Logger:     a.log.With("component", "output", "output", oc.Name),
		Version:    a.set.Version,
		UserAgent:  "agent/" + a.set.Version,
		Stdout:     a.set.Stdout,
		Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"output": oc.Name}, a.m.reg),
		MaxConns:   a.outputConcurrency(oc.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", oc.Name, err)
	}
	return o, nil
}

// Run runs the pipeline until ctx is done (or, in once mode, until all is
// delivered), then shuts down without losing what the spool accepted.
func (a *Agent) Run(ctx context.Context) (err error) {
	defer close(a.stopped)
	cfg := a.cfg
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent: state directory: %w", err)
	}
	store, err := checkpoint.Open(filepath.Join(cfg.StateDir, "checkpoints.json"), checkpoint.Settings{Logger: a.log.With("component", "checkpoint")})
	if err != nil {
		return fmt.Errorf("agent: checkpoints: %w", err)
	}
	defer func() {
		if cerr := store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("agent: checkpoints: %w", cerr)
		}
	}()
	dlq := openDeadLetter(cfg.StateDir)
	dlq.configure(cfg.DeadLetter, a.m, a.log.With("component", "dead_letter"))
	defer dlq.close()

	for _, oc := range cfg.Outputs {
		if !a.outputUsed(oc.Name) {
			continue
		}
		o, err := a.buildOutput(oc)
		if err != nil {
			return err
		}
		a.outputs[oc.Name] = o
	}
	defer a.closeOutputs()

	srcCfg := map[string]SourceConfig{}
	for _, s := range cfg.Sources {
		srcCfg[s.Name] = s
	}
	defer a.closeSpools()
	outCfg := map[string]OutputConfig{}
	for _, oc := range cfg.Outputs {
		outCfg[oc.Name] = oc
	}
	for _, fc := range cfg.Flows {
		fc.recordLimit, _ = flowRecordLimit(fc, outCfg)
		flowLog := a.log.With("flow", fc.Name) // one component key per line: each part adds its own
		log := flowLog.With("component", "flow")
		sc := cfg.Spool
		sc.Dir = filepath.Join(cfg.Spool.Dir, fc.Name)
		sp, err := spool.Open(sc, spool.Settings{Logger: flowLog.With("component", "spool")})
		if err != nil {
			return fmt.Errorf("flow %s: %w", fc.Name, err)
		}
		fr := &flowRuntime{cfg: fc, spool: sp}
		a.flows = append(a.flows, fr)
		fl, err := newFlow(fc.Name, fc, sp, dlq, a.m.flow(fc.Name), log)
		if err != nil {
			return err
		}
		fr.flow = fl
		if sm, ok := a.outputs[fc.Output].(outputs.ShardMapper); ok {
			// Aggregates are built per shard of the primary's stream; a
			// failover of another type takes them as they are.
			fl.useShardMap(sm)
		}
		// Outputs that all write records one by one get aggregates in the
		// cheaper newline framing; the others only ever see KPL.
		lines := writesRecords(a.outputs[fc.Output]) && (fc.Failover == "" || writesRecords(a.outputs[fc.Failover]))
		if lines {
			if err := fl.writeLines(); err != nil {
				return err
			}
		}
		fr.sender = &sender{flow: fc.Name, cfg: fc.Sender, spool: sp, dlq: dlq, log: flowLog.With("component", "sender"), lines: lines,
			metrics: a.m.sender(fc.Name), primary: &outputState{out: a.outputs[fc.Output], metrics: a.m.output(fc.Output)}}
		if fc.Failover != "" {
			fr.sender.failover = &outputState{out: a.outputs[fc.Failover], metrics: a.m.output(fc.Failover)}
		}
		for _, name := range fc.Sources {
			sc := srcCfg[name]
			t, _ := a.set.Components.Source(sc.Type) // New checked it is there
			src, err := t.New(sc.Config, source.Settings{Name: name, Logger: a.log.With("component", "source", "source", name),
				Checkpoints: store, Once: a.set.Once, CheckpointInterval: cfg.Checkpoint.Interval,
				Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"source": name}, a.m.reg), Stdin: a.set.Stdin})
			if err != nil {
				return fmt.Errorf("source %s: %w", name, err)
			}
			fr.sources = append(fr.sources, src)
		}
		if fc.SpoolBypass && len(fr.sources) > 0 && allReplayable(fr.sources) {
			q := newDirectQueue()
			fl.direct = q
			fl.directOK.Store(true)
			fr.sender.direct = q
		}
	}
	a.registerStateMetrics()
	stopStatus := a.startStatus(dlq)
	defer stopStatus()

	if ad := a.set.Admin; ad != nil {
		ad.attach(a) // the owner's endpoint, kept across reloads
		defer ad.detach(a)
	} else if l := cfg.Admin.Listen; l != "" && l != "off" {
		ad, err := StartAdmin(l, a.log.With("component", "admin"))
		if err != nil {
			return err
		}
		ad.attach(a)
		a.admin = ad
		defer func() { ad.close(a.closeBy) }()
	}
	return a.run(ctx, dlq)
}

// allReplayable reports whether every source can read its records again
// after a crash (it checkpoints only what the agent committed).
func allReplayable(srcs []source.Source) bool {
	for _, s := range srcs {
		if _, ok := s.(source.Committer); !ok {
			return false
		}
	}
	return true
}

// outputConcurrency is the most Sends in flight to the named output: the
// sum of the concurrency of the flows that send to it (as primary or
// failover).
func (a *Agent) outputConcurrency(name string) int {
	n := 0
	for _, f := range a.cfg.Flows {
		if f.Output == name || f.Failover == name {
			n += f.Sender.Concurrency
		}
	}
	return n
}

func (a *Agent) outputUsed(name string) bool {
	for _, f := range a.cfg.Flows {
		if f.Output == name || f.Failover == name {
			return true
		}
	}
	return false
}

func (a *Agent) closeOutputs() {
	by := time.Now().Add(5 * time.Second)
	if !a.closeBy.IsZero() {
		by = a.closeBy
		if soon := time.Now().Add(100 * time.Millisecond); by.Before(soon) {
			by = soon
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), by)
	defer cancel()
	for name, o := range a.outputs {
		if err := o.Close(ctx); err != nil {
			a.log.Warn("closing output", "output", name, "error", err)
		}
	}
}

func (a *Agent) closeSpools() {
	for _, fr := range a.flows {
		if fr.flow != nil {
			fr.flow.close()
		}
		if err := fr.spool.Close(); err != nil {
			a.log.Error("closing spool", "flow", fr.cfg.Name, "error", err)
		}
	}
}

// run is the lifecycle: senders, timers and sources start; on ctx's end (or
// once all sources finished in once mode) sources stop, aggregates are
// flushed to the spool, the spool is synced, outputs get shutdown_timeout to
// drain, and checkpoints are persisted.
func (a *Agent) run(ctx context.Context, dlq *deadLetter) error {
	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSend()
	timerCtx, stopTimers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTimers()
	srcCtx, stopSources := context.WithCancel(ctx)
	defer stopSources()

	var bg sync.WaitGroup
	fatal := make(chan error, 1)
	fail := func(err error) {
		select {
		case fatal <- err:
		default:
		}
	}
	var timers sync.WaitGroup
	for _, fr := range a.flows {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := fr.sender.run(sendCtx); err != nil {
				fail(err)
			}
		}()
		timers.Add(1)
		go func() {
			defer timers.Done()
			if err := fr.flow.runTimers(timerCtx, srcCtx, a.cfg.Checkpoint.Interval); err != nil {
				fail(err)
			}
		}()
	}

	var srcWG sync.WaitGroup
	srcDone := make(chan struct{})
	for _, fr := range a.flows {
		for _, src := range fr.sources {
			committer, _ := src.(source.Committer)
			emit := fr.tap.wrap(fr.cfg.Name, src.Name(), fr.flow.emitFor(src.Name(), committer, a.m.source(src.Name())))
			srcWG.Add(1)
			go func() {
				defer srcWG.Done()
				if err := src.Run(srcCtx, emit); err != nil && srcCtx.Err() == nil {
					fail(fmt.Errorf("source %s: %w", src.Name(), err))
				}
			}()
		}
	}
	go func() { srcWG.Wait(); close(srcDone) }()

	a.state.Store(stateRunning)
	if a.set.OnReady != nil {
		a.set.OnReady()
	}
	a.log.Info("agent running", "flows", len(a.flows), "state_dir", a.cfg.StateDir)

	var runErr error
	drainForever := false
	select {
	case <-ctx.Done():
	case runErr = <-fatal:
	case <-srcDone:
		if a.set.Once {
			drainForever = true
		}
	}
	// A source that failed also ends its Run: both cases may be ready.
	if runErr == nil {
		select {
		case runErr = <-fatal:
			drainForever = false
		default:
		}
	}
	a.state.Store(stateStopping)
	stopSources()

	// One deadline for the whole stop: shutdown_timeout from now for the
	// sources to return, the aggregators to flush, and the senders to
	// deliver; then stopMargin for what is left to be spilled or logged, the
	// spools to sync and the outputs to close. Nothing in between waits on
	// its own clock. (In once mode the drain is the point: no deadline, a
	// signal still interrupts.)
	stopCtx, cancelStop := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	defer cancelStop()
	if drainForever {
		stopCtx = ctx
	}
	if !waitGroupCtx(stopCtx, &srcWG) {
		a.log.Warn("sources did not stop within shutdown_timeout; their last records are read again after a restart")
	}

	// Everything the sources emitted goes to the spool, durably (or, in
	// once mode, on to the destination directly, however long that takes).
	// The flows flush side by side: one waiting for room in its spool does
	// not take the others' time.
	unflushed := make([]int, len(a.flows))
	var fw sync.WaitGroup
	for i, fr := range a.flows {
		fw.Add(1)
		go func() {
			defer fw.Done()
			if !drainForever {
				fr.flow.directOK.Store(false)
			}
			if err := fr.flow.flushAll(stopCtx); err != nil {
				unflushed[i] = fr.flow.pending()
				if stopCtx.Err() == nil {
					a.log.Error("flushing aggregates at shutdown; their records will be read again after a restart", "flow", fr.cfg.Name, "error", err)
				}
			}
			if err := fr.spool.Sync(); err != nil {
				a.log.Error("syncing the spool", "flow", fr.cfg.Name, "error", err)
			}
			fr.flow.commit(time.Now())
		}()
	}
	fw.Wait()

	if drainForever || runErr == nil {
		runErr = a.waitDrained(stopCtx, fatal)
	}

	// The margin: senders stop (an interrupted Send leaves its entries in
	// the spool, or its records in their files), what the direct path holds
	// is spilled if the spool has room now, and checkpoints move.
	finalCtx, cancelFinal := context.WithTimeout(context.WithoutCancel(ctx), stopMargin)
	defer cancelFinal()
	a.closeBy, _ = finalCtx.Deadline()
	stopSend()
	if !waitGroupCtx(finalCtx, &bg) {
		a.log.Warn("senders did not stop in time; their entries stay in the spool")
	}
	// With the senders stopped nothing makes room in a spool: the last
	// spills take room that is there and do not wait for more.
	spillCtx, cancelSpill := context.WithTimeout(finalCtx, stopSpillWait)
	defer cancelSpill()
	left := make([]directLeft, len(a.flows))
	for i, fr := range a.flows {
		fr.flow.directOK.Store(false)
		left[i] = fr.sender.drainDirect(spillCtx)
		if err := fr.spool.Sync(); err != nil {
			a.log.Error("syncing the spool", "flow", fr.cfg.Name, "error", err)
		}
	}
	stopTimers()
	if !waitGroupCtx(finalCtx, &timers) {
		// A flush waits for a flow held by a source that did not stop.
		a.log.Warn("flow timers did not stop in time")
	}
	for _, fr := range a.flows {
		fr.flow.commit(time.Now())
	}
	a.logStopSummary(left, unflushed)
	if runErr != nil {
		return runErr
	}
	if a.set.Once {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if dlq.count.Load() > 0 {
			return fmt.Errorf("%w: %d records (see %s)", ErrDeadLettered, dlq.count.Load(), dlq.path)
		}
	}
	return nil
}

// stopMargin bounds the end of a shutdown after shutdown_timeout: the
// senders' return, the last spills (which no longer wait for room), the
// spools' sync and closing the outputs.
const stopMargin = time.Second

// stopSpillWait bounds the wait for spool room of shutdown's last spills.
const stopSpillWait = 100 * time.Millisecond

// waitGroupCtx waits for wg, or until ctx ends. It reports whether wg is done.
func waitGroupCtx(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// logStopSummary logs one line saying what shutdown left undelivered and
// where it comes from after the next start: the spool, or the files whose
// checkpoints did not move past it.
func (a *Agent) logStopSummary(left []directLeft, unflushed []int) {
	var inSpool int64
	var memAggs, memRecords int
	var files []string
	nfiles := 0
	for i, fr := range a.flows {
		inSpool += fr.spool.Stats().Entries
		memAggs += left[i].aggregates
		memRecords += left[i].records + unflushed[i]
		for _, h := range fr.flow.heldBack() {
			nfiles++
			if len(files) < maxSummaryFiles {
				files = append(files, h)
			}
		}
	}
	if inSpool == 0 && nfiles == 0 && memRecords == 0 {
		a.log.Info("stopped; everything read was delivered")
		return
	}
	a.log.Warn("stopped before everything was delivered; the rest is sent after the next start",
		"spool_entries", inSpool, "unspooled_records", memRecords, "unspooled_aggregates", memAggs,
		"files_read_again", nfiles, "read_again_from", files)
}

// maxSummaryFiles bounds the files named in the shutdown summary.
const maxSummaryFiles = 10

// waitDrained returns when nothing is buffered, every tracked record is
// durable and every flow's spool is empty (in that order: a spill between
// the checks cannot make it return early), or when ctx ends. A fatal error
// ends it too and is returned.
func (a *Agent) waitDrained(ctx context.Context, fatal chan error) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		drained := true
		for _, fr := range a.flows {
			// Release what became durable now, not at the next checkpoint
			// tick: --once would otherwise wait up to checkpoint.interval.
			fr.flow.commit(time.Now())
			if !fr.flow.idle() || fr.spool.Stats().Entries > 0 {
				drained = false
				break
			}
		}
		if drained {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-fatal:
			return err
		case <-t.C:
		}
	}
}

// writesRecords reports whether out writes user records one by one
// (outputs.RecordWriter).
func writesRecords(out outputs.Output) bool {
	w, ok := out.(outputs.RecordWriter)
	return ok && w.WritesRecords()
}
