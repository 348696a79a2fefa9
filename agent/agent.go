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
	"strings"
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

// OutputError is an output that could not be built (at start or reload):
// its name, its type, and the output's error, which starts with the type
// (`output "out": kinesis: region: not set`). The agent names the output
// once; the output names only its package.
type OutputError struct {
	Name, Type string
	Err        error
}

func (e *OutputError) Error() string { return fmt.Sprintf("output %q: %v", e.Name, e.Err) }
func (e *OutputError) Unwrap() error { return e.Err }

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
	// Admin, when set, is the admin endpoint to serve this pipeline on (its
	// owner's: `agent run` starts it before the pipeline and serves POST
	// /reload on it); otherwise Run starts its own on admin.listen.
	Admin *Admin
}

// Agent is a configured pipeline. Run it once; Reload applies a new
// configuration to it while it runs (reload.go).
type Agent struct {
	cfg Config
	set Settings
	log *slog.Logger
	m   *metrics

	outputs map[string]*builtOutput
	flows   []*flowRuntime
	admin   *Admin
	// store and dlq are the pipeline's checkpoints and dead-letter file,
	// shared by every flow and kept across reloads.
	store *checkpoint.Store
	dlq   *deadLetter
	// fatal takes the first error of a part that stops the pipeline.
	fatal chan error
	// reloads takes Reload's requests to the running pipeline (reload.go).
	reloads chan reloadRequest
	// closeBy is when closing the outputs must end (the end of shutdown's
	// margin); zero before a shutdown.
	closeBy time.Time
	// stopped is closed when Run returns: what streams from this pipeline
	// (agent tap) on an endpoint that outlives it ends then.
	stopped chan struct{}

	// What status, readiness and the watchdog read (status.go).
	state   atomic.Int32
	stMu    sync.Mutex
	running []*flowRuntime
	// reloadSince is when the reload being applied began (unix nanos; 0:
	// none). The state stays running (readiness holds); status says
	// reloading.
	reloadSince atomic.Int64
	// lastReload is how the last reload went (RecordReload); nil before
	// the first.
	lastReload atomic.Pointer[ReloadStatus]
	// runningCfg is a.cfg as of the last publish (runtimeConfig).
	runningCfg *Config
	st         *statusTracker
	dlqCount   atomic.Pointer[atomic.Int64]
}

type flowRuntime struct {
	cfg     FlowConfig
	sources []source.Source
	// srcCfgs are the sources' configurations as built (a reload compares
	// them), srcRegs what each registered on the metrics registry.
	srcCfgs []SourceConfig
	srcRegs []*trackedRegisterer
	// borrowed names the sources taken over, running, from the flow this
	// one replaced (reload.go).
	borrowed map[string]bool
	flow     *flow
	sender   *sender
	spool    *spool.Spool
	// spoolMetrics are the spool's collectors (statemetrics.go).
	spoolMetrics []prometheus.Collector
	tap          *tap // agent tap (tap.go); kept when a reload rebuilds the flow
	life         *flowLife
}

// flowLife is what runs of a flow: its sources, its timers and its sender,
// each stopped on its own (shutdown stops them in order, a reload may stop
// only the sender).
type flowLife struct {
	stopTimers, stopSend context.CancelFunc
	timerWG, sendWG      sync.WaitGroup
	// stopFlush ends the flow's own source context (the timers' flushes
	// wait on it); srcs are its sources' runs.
	stopFlush context.CancelFunc
	srcs      []*sourceRun
}

// stopSources stops the flow's sources.
func (l *flowLife) stopSources() {
	l.stopFlush()
	for _, r := range l.srcs {
		r.stop()
	}
}

// sourceRun is one source's Run.
type sourceRun struct {
	name string
	stop context.CancelFunc
	done chan struct{} // closed when Run returned
	// sw carries the emits of a source that cannot replay (socket, stdin):
	// a reload rebuilding its flow pauses it and points it at the new flow,
	// so it keeps its listener, connections or stream (reload.go). nil for
	// sources that replay: they are rebuilt with their flow.
	sw *emitSwitch
}

// builtOutput is one running output and what it was built from.
type builtOutput struct {
	out  outputs.Output
	cfg  OutputConfig
	conc int // the MaxConns it was given
	reg  *trackedRegisterer
}

// New validates cfg and builds outputs and sources. It does no I/O besides
// reading TLS files; Run opens the spool and state.
func New(cfg Config, set Settings) (*Agent, error) {
	if err := checkConfig(cfg, set.Components); err != nil {
		return nil, err
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
	a := &Agent{cfg: cfg, set: set, log: set.Logger, m: newMetrics(), outputs: map[string]*builtOutput{}, st: newStatusTracker(time.Now()),
		stopped: make(chan struct{}), reloads: make(chan reloadRequest)}
	a.m.buildInfo(set.Version, set.Commit)
	return a, nil
}

// checkConfig validates cfg and checks that the types it names are
// compiled in.
func checkConfig(cfg Config, comps Components) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var errs []error
	for i, s := range cfg.Sources {
		if _, ok := comps.Source(s.Type); !ok {
			errs = append(errs, fmt.Errorf("sources[%d].type: %q is not compiled in (want %s)", i, s.Type, orList(comps.SourceNames())))
		}
	}
	for i, o := range cfg.Outputs {
		if _, ok := comps.Output(o.Type); !ok {
			errs = append(errs, fmt.Errorf("outputs[%d].type: %q is not compiled in (want %s)", i, o.Type, orList(comps.OutputNames())))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// buildOutput builds the output oc for cfg (whose flows give its
// concurrency).
func (a *Agent) buildOutput(cfg Config, oc OutputConfig) (*builtOutput, error) {
	t, _ := a.set.Components.Output(oc.Type) // New checked it is there
	reg := &trackedRegisterer{reg: a.m.reg}
	conc := outputConcurrency(cfg, oc.Name)
	o, err := t.New(oc.Name, oc.Config, outputs.Settings{
		Logger:     a.log.With("component", "output", "output", oc.Name),
		Version:    a.set.Version,
		UserAgent:  "agent/" + a.set.Version,
		Stdout:     a.set.Stdout,
		Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"output": oc.Name}, reg),
		MaxConns:   conc,
	})
	if err != nil {
		reg.unregisterAll()
		return nil, &OutputError{Name: oc.Name, Type: oc.Type, Err: err}
	}
	return &builtOutput{out: o, cfg: oc, conc: conc, reg: reg}, nil
}

// Run runs the pipeline until ctx is done (or, in once mode, until all is
// delivered), then shuts down without losing what the spool accepted.
func (a *Agent) Run(ctx context.Context) (err error) {
	defer close(a.stopped)
	cfg := a.cfg
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent: state directory: %w", err)
	}
	store, err := checkpoint.Open(filepath.Join(cfg.StateDir, checkpointFile), checkpoint.Settings{Logger: a.log.With("component", "checkpoint")})
	if errors.Is(err, checkpoint.ErrLocked) {
		// Two agents on one state directory would read the same files
		// and spools: say which directory, and what to change.
		return fmt.Errorf("agent: the state directory %s is in use by another agent (%w): stop that one, or give this one its own state directory (state_dir; agent tail --state-dir)", cfg.StateDir, err)
	}
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
	a.store, a.dlq = store, dlq

	for _, oc := range cfg.Outputs {
		if !outputUsed(cfg, oc.Name) {
			continue
		}
		bo, err := a.buildOutput(cfg, oc)
		if err != nil {
			return err
		}
		a.outputs[oc.Name] = bo
	}
	defer a.closeOutputs()

	defer a.closeSpools()
	for _, fc := range cfg.Flows {
		sp, err := a.openSpool(cfg, fc.Name)
		if err != nil {
			return err
		}
		fr, err := a.buildFlow(cfg, fc, sp, a.outputs, &tap{}, nil)
		if err != nil {
			_ = sp.Close()
			return err
		}
		a.flows = append(a.flows, fr)
	}
	for _, fr := range a.flows {
		a.registerSpoolMetrics(fr)
	}
	stopStatus := a.startStatus(dlq)
	defer stopStatus()
	// CloudWatch metrics (cloudwatch.go): deferred after the spools and
	// outputs, so the last publish runs before they close.
	stopCloudWatch, err := a.startCloudWatch()
	if err != nil {
		return err
	}
	defer stopCloudWatch()

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

// openSpool opens the named flow's spool (recovering it).
func (a *Agent) openSpool(cfg Config, flowName string) (*spool.Spool, error) {
	sc := cfg.Spool
	sc.Dir = filepath.Join(cfg.Spool.Dir, flowName)
	sp, err := spool.Open(sc, spool.Settings{Logger: a.log.With("flow", flowName, "component", "spool")})
	if err != nil {
		return nil, fmt.Errorf("flow %s: %w", flowName, err)
	}
	if sp.Stats().Entries > 0 {
		if t, ok := oldestSegmentWrite(sc.Dir); ok {
			a.st.setRecovered(flowName, t)
		}
	}
	return sp, nil
}

// oldestSegmentWrite is the earliest modification time of the spool
// segments in dir: every entry they hold was written no later than that.
func oldestSegmentWrite(dir string) (time.Time, bool) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return time.Time{}, false
	}
	var oldest time.Time
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".seg") {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		if oldest.IsZero() || fi.ModTime().Before(oldest) {
			oldest = fi.ModTime()
		}
	}
	return oldest, !oldest.IsZero()
}

// buildFlow builds the flow fc of cfg on the spool sp, sending to outs: its
// aggregation stage, its sender and its sources (not started). On error
// what it registered is unregistered; sp stays open.
// The sources in keep are running ones the flow takes over (reload.go).
func (a *Agent) buildFlow(cfg Config, fc FlowConfig, sp *spool.Spool, outs map[string]*builtOutput, tp *tap, keep map[string]keptSource) (fr *flowRuntime, err error) {
	outCfg := map[string]OutputConfig{}
	for _, oc := range cfg.Outputs {
		outCfg[oc.Name] = oc
	}
	srcCfg := map[string]SourceConfig{}
	for _, s := range cfg.Sources {
		srcCfg[s.Name] = s
	}
	fc.recordLimit, _ = flowRecordLimit(fc, outCfg)
	flowLog := a.log.With("flow", fc.Name) // one component key per line: each part adds its own
	fl, err := newFlow(fc.Name, fc, sp, a.dlq, a.m.flow(fc.Name), flowLog.With("component", "flow"))
	if err != nil {
		return nil, err
	}
	fr = &flowRuntime{cfg: fc, spool: sp, flow: fl, tap: tp}
	defer func() {
		if err != nil {
			discardFlow(fr)
		}
	}()
	if sm, ok := outs[fc.Output].out.(outputs.ShardMapper); ok {
		// Aggregates are built per shard of the primary's stream; a
		// failover of another type takes them as they are.
		fl.useShardMap(sm)
	}
	fr.sender = a.newSender(fc, sp, outs)
	if fr.sender.lines {
		// Outputs that all write records one by one get aggregates in the
		// cheaper newline framing (a sender whose outputs do not, after a
		// reload, converts them to KPL).
		if err := fl.writeLines(); err != nil {
			return nil, err
		}
	}
	for _, name := range fc.Sources {
		if k, ok := keep[name]; ok {
			fr.sources = append(fr.sources, k.src)
			fr.srcCfgs = append(fr.srcCfgs, k.cfg)
			fr.srcRegs = append(fr.srcRegs, k.reg)
			if fr.borrowed == nil {
				fr.borrowed = map[string]bool{}
			}
			fr.borrowed[name] = true
			continue
		}
		sc := srcCfg[name]
		t, _ := a.set.Components.Source(sc.Type) // New checked it is there
		reg := &trackedRegisterer{reg: a.m.reg}
		src, err := t.New(sc.Config, source.Settings{Name: name, Logger: a.log.With("component", "source", "source", name),
			Checkpoints: a.store, Once: a.set.Once, CheckpointInterval: cfg.Checkpoint.Interval,
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"source": name}, reg), Stdin: a.set.Stdin})
		if err != nil {
			reg.unregisterAll()
			return nil, fmt.Errorf("source %s: %w", name, err)
		}
		fr.sources = append(fr.sources, src)
		fr.srcCfgs = append(fr.srcCfgs, sc)
		fr.srcRegs = append(fr.srcRegs, reg)
	}
	if fc.SpoolBypass && len(fr.sources) > 0 && allReplayable(fr.sources) {
		q := newDirectQueue()
		fl.direct = q
		fl.directOK.Store(true)
		fr.sender.direct = q
	}
	return fr, nil
}

// newSender makes the sender of flow fc, reading sp and sending to outs.
func (a *Agent) newSender(fc FlowConfig, sp *spool.Spool, outs map[string]*builtOutput) *sender {
	lines := writesRecords(outs[fc.Output].out) && (fc.Failover == "" || writesRecords(outs[fc.Failover].out))
	s := &sender{flow: fc.Name, cfg: fc.Sender, spool: sp, dlq: a.dlq, log: a.log.With("flow", fc.Name, "component", "sender"), lines: lines,
		metrics: a.m.sender(fc.Name), primary: &outputState{out: outs[fc.Output].out, metrics: a.m.output(fc.Output)}}
	if fc.Failover != "" {
		s.failover = &outputState{out: outs[fc.Failover].out, metrics: a.m.output(fc.Failover)}
	}
	return s
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
func outputConcurrency(cfg Config, name string) int {
	n := 0
	for _, f := range cfg.Flows {
		if f.Output == name || f.Failover == name {
			n += f.Sender.Concurrency
		}
	}
	return n
}

func outputUsed(cfg Config, name string) bool {
	for _, f := range cfg.Flows {
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
		if err := o.out.Close(ctx); err != nil {
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

// run is the lifecycle: senders, timers and sources start; reloads are
// applied as they come (reload.go); on ctx's end (or once all sources
// finished in once mode) sources stop, aggregates are flushed to the spool,
// the spool is synced, outputs get shutdown_timeout to drain, and
// checkpoints are persisted.
func (a *Agent) run(ctx context.Context, dlq *deadLetter) error {
	if a.fatal == nil {
		a.fatal = make(chan error, 1)
	}
	fatal := a.fatal
	for _, fr := range a.flows {
		a.startFlow(ctx, fr, nil)
	}
	srcDone := a.watchSources()

	a.state.Store(stateRunning)
	if a.set.OnReady != nil {
		a.set.OnReady()
	}
	a.log.Info("agent running", "flows", len(a.flows), "state_dir", a.cfg.StateDir)

	var runErr error
	drainForever := false
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case runErr = <-fatal:
			break wait
		case <-srcDone:
			if a.set.Once {
				drainForever = true
			}
			break wait
		case req := <-a.reloads:
			a.reloadSince.Store(time.Now().UnixNano())
			rep, err := a.apply(ctx, req.cfg)
			a.reloadSince.Store(0)
			req.reply <- reloadReply{rep: rep, err: err}
			if err == nil {
				srcDone = a.watchSources() // the running sources now
			}
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
	for _, fr := range a.flows {
		fr.life.stopSources()
	}

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
	if !waitSources(stopCtx, a.flows) {
		a.log.Warn("sources did not stop within shutdown_timeout; their last records are read again after a restart")
	}

	// Everything the sources emitted goes to the spool, durably (or, in
	// once mode, on to the destination directly, however long that takes).
	// The flows flush side by side: one waiting for room in its spool does
	// not take the others' time.
	unflushed := a.flushFlows(stopCtx, a.flows, !drainForever)

	if drainForever || runErr == nil {
		runErr = a.waitDrained(stopCtx, a.flows, fatal)
	}

	// The margin: senders stop (an interrupted Send leaves its entries in
	// the spool, or its records in their files), what the direct path holds
	// is spilled if the spool has room now, and checkpoints move.
	finalCtx, cancelFinal := context.WithTimeout(context.WithoutCancel(ctx), stopMargin)
	defer cancelFinal()
	a.closeBy, _ = finalCtx.Deadline()
	left := a.stopSenders(finalCtx, a.flows)
	a.stopTimers(finalCtx, a.flows)
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

// fail passes a part's error to run, which stops the pipeline.
func (a *Agent) fail(err error) {
	select {
	case a.fatal <- err:
	default:
	}
}

// startFlow starts fr's sender, timers and sources. The sources in kept
// are already running (paused by a reload): they are resumed, emitting to
// fr. Once ctx is done (a stop arrived during a reload) the other sources
// are not started: they would open files and listeners and read records
// only for the shutdown to stop them.
func (a *Agent) startFlow(ctx context.Context, fr *flowRuntime, kept map[string]*sourceRun) {
	if fr.tap == nil {
		fr.tap = &tap{}
	}
	l := &flowLife{}
	fr.life = l
	timerCtx, stopTimers := context.WithCancel(context.WithoutCancel(ctx))
	srcCtx, stopFlush := context.WithCancel(ctx)
	l.stopTimers, l.stopFlush = stopTimers, stopFlush
	a.startSender(ctx, fr)
	every := a.cfg.Checkpoint.Interval // (a reload cannot change it)
	l.timerWG.Go(func() {
		if err := fr.flow.runTimers(timerCtx, srcCtx, every); err != nil {
			a.fail(err)
		}
	})
	for _, src := range fr.sources {
		committer, _ := src.(source.Committer)
		sm := a.m.source(src.Name())
		emit := fr.tap.wrap(fr.cfg.Name, src.Name(), fr.flow.emitFor(src.Name(), committer, sm))
		// A source that hands over a read's records at once (sockets)
		// takes the flow's lock once per read.
		bs, _ := src.(source.BatchSource)
		var batch source.EmitBatch
		if bs != nil {
			batch = fr.tap.wrapBatch(fr.cfg.Name, src.Name(), fr.flow.emitBatchFor(src.Name(), committer, sm))
		}
		if run := kept[src.Name()]; run != nil {
			l.srcs = append(l.srcs, run)
			run.sw.resume(emit, batch)
			continue
		}
		if ctx.Err() != nil {
			if b, ok := src.(source.Binder); ok {
				b.Release() // taken by a reload (see apply)
			}
			continue
		}
		var runCtx context.Context
		run := &sourceRun{name: src.Name(), done: make(chan struct{})}
		if committer == nil {
			// Its own context: it may outlive this flow (a reload).
			runCtx, run.stop = context.WithCancel(ctx)
			run.sw = &emitSwitch{emit: emit, batch: batch}
			emit = run.sw.call
			if batch != nil {
				batch = run.sw.callBatch
			}
		} else {
			runCtx, run.stop = context.WithCancel(srcCtx)
		}
		l.srcs = append(l.srcs, run)
		go func() {
			defer close(run.done)
			var err error
			if bs != nil {
				err = bs.RunBatch(runCtx, emit, batch)
			} else {
				err = src.Run(runCtx, emit)
			}
			if err != nil && runCtx.Err() == nil {
				a.fail(fmt.Errorf("source %s: %w", src.Name(), err))
			}
		}()
	}
}

// startSender starts fr's sender (again, after a reload replaced it).
func (a *Agent) startSender(ctx context.Context, fr *flowRuntime) {
	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	fr.life.stopSend = stopSend
	s := fr.sender
	fr.life.sendWG.Go(func() {
		if err := s.run(sendCtx); err != nil {
			a.fail(err)
		}
	})
}

// watchSources returns a channel closed once every source of the running
// flows has returned (stdin at its end, everything in once mode).
func (a *Agent) watchSources() <-chan struct{} {
	done := make(chan struct{})
	runs := sourceRuns(a.flows)
	go func() {
		for _, r := range runs {
			<-r.done
		}
		close(done)
	}()
	return done
}

func sourceRuns(flows []*flowRuntime) []*sourceRun {
	var runs []*sourceRun
	for _, fr := range flows {
		runs = append(runs, fr.life.srcs...)
	}
	return runs
}

// waitSources waits until the sources of flows returned, or ctx ends. It
// reports whether they all returned.
func waitSources(ctx context.Context, flows []*flowRuntime) bool {
	for _, r := range sourceRuns(flows) {
		select {
		case <-r.done:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// flushFlows flushes the aggregates of flows (whose sources stopped) into
// their spools, side by side, syncs the spools and commits checkpoints. It
// returns, per flow, the records it could not flush by ctx's end. With
// closeDirect the direct path closes first (everything goes to the spool).
func (a *Agent) flushFlows(ctx context.Context, flows []*flowRuntime, closeDirect bool) []int {
	unflushed := make([]int, len(flows))
	var fw sync.WaitGroup
	for i, fr := range flows {
		fw.Go(func() {
			if closeDirect {
				fr.flow.closeDirect()
			}
			if err := fr.flow.flushAll(ctx); err != nil {
				unflushed[i] = fr.flow.pending()
				if ctx.Err() == nil {
					a.log.Error("flushing aggregates at shutdown; their records will be read again after a restart", "flow", fr.cfg.Name, "error", err)
				}
			}
			if err := fr.spool.Sync(); err != nil {
				a.log.Error("syncing the spool", "flow", fr.cfg.Name, "error", err)
			}
			fr.flow.commit(time.Now())
		})
	}
	fw.Wait()
	return unflushed
}

// stopSenders stops the senders of flows and spills what their direct path
// holds, if the spool has room now (with the senders stopped nothing makes
// room: the last spills take room that is there and do not wait for more).
func (a *Agent) stopSenders(ctx context.Context, flows []*flowRuntime) []directLeft {
	for _, fr := range flows {
		fr.life.stopSend()
	}
	if !waitGroupsCtx(ctx, flows, func(l *flowLife) *sync.WaitGroup { return &l.sendWG }) {
		a.log.Warn("senders did not stop in time; their entries stay in the spool")
	}
	spillCtx, cancelSpill := context.WithTimeout(ctx, stopSpillWait)
	defer cancelSpill()
	left := make([]directLeft, len(flows))
	for i, fr := range flows {
		fr.flow.closeDirect()
		left[i] = fr.sender.drainDirect(spillCtx)
		if err := fr.spool.Sync(); err != nil {
			a.log.Error("syncing the spool", "flow", fr.cfg.Name, "error", err)
		}
	}
	return left
}

// stopTimers stops the timers of flows and commits their checkpoints.
func (a *Agent) stopTimers(ctx context.Context, flows []*flowRuntime) {
	for _, fr := range flows {
		fr.life.stopTimers()
	}
	if !waitGroupsCtx(ctx, flows, func(l *flowLife) *sync.WaitGroup { return &l.timerWG }) {
		// A flush waits for a flow held by a source that did not stop.
		a.log.Warn("flow timers did not stop in time")
	}
	for _, fr := range flows {
		fr.flow.commit(time.Now())
	}
}

// waitGroupsCtx waits for the wait group wg picks of every flow, or until
// ctx ends. It reports whether they are all done.
func waitGroupsCtx(ctx context.Context, flows []*flowRuntime, wg func(*flowLife) *sync.WaitGroup) bool {
	var all sync.WaitGroup
	all.Go(func() {
		for _, fr := range flows {
			wg(fr.life).Wait()
		}
	})
	return waitGroupCtx(ctx, &all)
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
	var memAggs, memRecords, lost int
	var files, lostFlows []string
	nfiles := 0
	for i, fr := range a.flows {
		inSpool += fr.spool.Stats().Entries
		memAggs += left[i].aggregates
		memRecords += left[i].records
		if unflushed[i] > 0 && !allReplayable(fr.sources) {
			// A socket's or stdin's records are not read again: what the
			// spool had no room for by the deadline is gone. Counted and
			// said, not promised for the next start.
			lost += unflushed[i]
			lostFlows = append(lostFlows, fr.cfg.Name)
			a.m.dropped.WithLabelValues(fr.cfg.Name, "shutdown").Add(float64(unflushed[i]))
		} else {
			memRecords += unflushed[i]
		}
		for _, h := range fr.flow.heldBack() {
			nfiles++
			if len(files) < maxSummaryFiles {
				files = append(files, h)
			}
		}
	}
	if lost > 0 {
		a.log.Error("stopped with records of sources that cannot be read again (sockets, stdin) that the full spool had no room for by shutdown_timeout: they are lost (agent_records_dropped_total{reason=\"shutdown\"})",
			"lost_records", lost, "flows", lostFlows)
	}
	if inSpool == 0 && nfiles == 0 && memRecords == 0 {
		if lost == 0 {
			// Dead-lettered records count as settled, not as delivered:
			// say so, or "delivered" reads as all went through.
			if d := a.dlqCount.Load(); d != nil && d.Load() > 0 {
				a.log.Info("stopped; everything read was delivered or dead-lettered", "dead_lettered", d.Load())
			} else {
				a.log.Info("stopped; everything read was delivered")
			}
		}
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
func (a *Agent) waitDrained(ctx context.Context, flows []*flowRuntime, fatal chan error) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		drained := true
		for _, fr := range flows {
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
