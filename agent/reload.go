package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/outputs"
)

// A reload applies a new configuration to the running pipeline
// (docs/design/005-reload.md): flows whose configuration, sources and
// outputs are unchanged keep running untouched (their listeners, spools,
// senders and connections); a flow whose outputs changed gets a new sender
// on its spool while its sources keep reading; any other changed flow is
// stopped as at shutdown and built again on its spool, taking over its
// unchanged sources that cannot replay (socket, stdin) running; removed flows stop
// (their spool stays on disk) and new ones start. Everything that can fail
// is built before anything stops: a reload that fails leaves the running
// pipeline as it was.

// ReloadReport says what a reload did, by flow name.
type ReloadReport struct {
	// Kept: unchanged, left running untouched.
	Kept []string
	// OutputsRebuilt: a new sender (and the outputs that changed) on the
	// flow's spool; its sources kept reading.
	OutputsRebuilt []string
	// Rebuilt: stopped as at shutdown and built again on its spool.
	Rebuilt []string
	Added   []string
	// Removed: stopped; what it had not delivered stays in its spool
	// directory (sent if a flow of that name comes back).
	Removed []string
	// NeedsRestart lists the changed settings that take effect only at
	// the next start; the running values stay.
	NeedsRestart []string
	// Undelivered lists the removed flows that stopped (after
	// shutdown_timeout) before delivering everything, and what they left.
	Undelivered []RemovedBacklog
}

// RemovedBacklog is what a removed flow had not delivered when it stopped.
type RemovedBacklog struct {
	Flow string
	// SpoolEntries stay in SpoolDir: sent if a flow of that name comes
	// back (deleting the directory discards them).
	SpoolEntries int64
	SpoolDir     string
	// FileRecords were read from files and neither delivered nor spooled:
	// their file positions were not saved past them, so a source reading
	// those files reads them again.
	FileRecords int
}

// Changed reports whether the reload changed any flow.
func (r ReloadReport) Changed() bool {
	return len(r.OutputsRebuilt)+len(r.Rebuilt)+len(r.Added)+len(r.Removed) > 0
}

type reloadRequest struct {
	cfg   Config
	reply chan reloadReply
}

type reloadReply struct {
	rep ReloadReport
	err error
}

// ErrNotRunning is returned by Reload when the pipeline stopped, or
// began to stop before the reload changed anything (the reload is undone).
var ErrNotRunning = errors.New("agent: the pipeline is not running")

// errStopping is a reload's answer when a stop arrived while it built the
// new parts: it was undone.
var errStopping = fmt.Errorf("agent: reload: not applied, the agent is stopping: %w", ErrNotRunning)

// Reload applies cfg to the running pipeline and returns what it did. cfg
// is validated first; when it is bad, or a part of it cannot be built, or
// a flow reading standard input would have to be rebuilt (its stream
// cannot pass to a new source without losing what is being read), the
// error says why and the running pipeline is left as it was. Reload waits
// for Run to start; it is safe from any goroutine, one reload at a time.
func (a *Agent) Reload(ctx context.Context, cfg Config) (ReloadReport, error) {
	if err := checkConfig(cfg, a.set.Components); err != nil {
		return ReloadReport{}, err
	}
	if cfg.Spool.Dir == "" {
		cfg.Spool.Dir = filepath.Join(cfg.StateDir, "spool")
	}
	req := reloadRequest{cfg: cfg, reply: make(chan reloadReply, 1)}
	select {
	case a.reloads <- req:
	case <-a.stopped:
		return ReloadReport{}, ErrNotRunning
	case <-ctx.Done():
		return ReloadReport{}, ctx.Err()
	}
	// Once taken, the request is answered: the run loop applies it before
	// it looks at anything else.
	r := <-req.reply
	return r.rep, r.err
}

// flowChange is what a reload does to one flow.
type flowChange int

const (
	flowKeep flowChange = iota
	flowNewSender
	flowRebuild
	flowAdd
)

type flowPlan struct {
	change flowChange
	cfg    FlowConfig
	old    *flowRuntime // nil for flowAdd
	fr     *flowRuntime // built: flowRebuild, flowAdd
	sender *sender      // built: flowNewSender
	// keep are the running sources a rebuilt flow takes over (flowRebuild).
	keep map[string]keptSource
}

// keptSource is a running source that a rebuilt flow takes over: one that
// cannot replay (socket, stdin) and whose configuration did not change. It
// keeps running (its listener, connections, stream) while the flow is
// replaced behind it.
type keptSource struct {
	src source.Source
	cfg SourceConfig
	reg *trackedRegisterer
	run *sourceRun
}

// apply runs in the run loop: nothing else starts or stops flows meanwhile.
func (a *Agent) apply(ctx context.Context, next Config) (rep ReloadReport, err error) {
	start := time.Now()
	old := a.cfg
	next, rep.NeedsRestart = keepRestartSettings(old, next)
	if len(rep.NeedsRestart) > 0 {
		a.log.Warn("reload: these settings take effect at the next restart; their running values stay", "settings", rep.NeedsRestart)
	}

	// 1. Build what changed, before anything stops. undo releases it if a
	// later part fails.
	var undo []func()
	defer func() {
		if err != nil {
			for _, f := range slices.Backward(undo) {
				f()
			}
		}
	}()

	outs := map[string]*builtOutput{}
	var replaced []*builtOutput // running outputs the new ones replace or that are no longer used
	for _, oc := range next.Outputs {
		if !outputUsed(next, oc.Name) {
			continue
		}
		cur := a.outputs[oc.Name]
		if cur != nil && sameComponent(cur.cfg.Type, cur.cfg.Config, oc.Type, oc.Config) && cur.conc == outputConcurrency(next, oc.Name) {
			outs[oc.Name] = cur
			continue
		}
		if cur != nil {
			// Its metrics make room for the new one's (same names and labels).
			cur.reg.unregisterAll()
			undo = append(undo, cur.reg.registerAgain)
		}
		bo, err := a.buildOutput(next, oc)
		if err != nil {
			return rep, err
		}
		undo = append(undo, func() { closeOutput(bo, a.log) })
		outs[oc.Name] = bo
	}
	for name, cur := range a.outputs {
		if outs[name] != cur {
			replaced = append(replaced, cur)
		}
	}

	oldFlows := map[string]*flowRuntime{}
	for _, fr := range a.flows {
		oldFlows[fr.cfg.Name] = fr
	}
	srcCfg := map[string]SourceConfig{}
	for _, s := range next.Sources {
		srcCfg[s.Name] = s
	}
	outCfg := map[string]OutputConfig{}
	for _, oc := range next.Outputs {
		outCfg[oc.Name] = oc
	}
	plans := make([]*flowPlan, 0, len(next.Flows))
	var problems []error
	for _, fc := range next.Flows {
		fc.recordLimit, _ = flowRecordLimit(fc, outCfg)
		p := &flowPlan{cfg: fc, old: oldFlows[fc.Name]}
		plans = append(plans, p)
		if p.old == nil {
			p.change = flowAdd
			continue
		}
		delete(oldFlows, fc.Name)
		sameSources := sameFlowSources(p.old, fc, srcCfg)
		sameBody := sameFlowBody(p.old.cfg, fc)
		sameSend := p.old.cfg.Output == fc.Output && p.old.cfg.Failover == fc.Failover &&
			reflect.DeepEqual(p.old.cfg.Sender, fc.Sender) && outs[fc.Output] == a.outputs[fc.Output] &&
			(fc.Failover == "" || outs[fc.Failover] == a.outputs[fc.Failover])
		_, oldMapped := p.old.sender.primary.out.(outputs.ShardMapper)
		_, newMapped := outs[fc.Output].out.(outputs.ShardMapper)
		switch {
		case sameSources && sameBody && sameSend:
			p.change = flowKeep
		case sameSources && sameBody && !oldMapped && !newMapped:
			// Aggregates do not depend on the outputs (no shard map): the
			// flow and its sources stay, the sender changes.
			p.change = flowNewSender
		default:
			p.change = flowRebuild
			p.keep = keptSources(p.old, fc, srcCfg)
			for _, sc := range p.old.srcCfgs {
				if _, kept := p.keep[sc.Name]; sc.Type == "stdin" && !kept && slices.Contains(fc.Sources, sc.Name) {
					problems = append(problems, fmt.Errorf("flow %s: its source %q reads a stream (type stdin) and changed: a new source cannot take over the stream without losing the line being read; restart the agent to apply this change", fc.Name, sc.Name))
				}
			}
		}
	}
	if err := errors.Join(problems...); err != nil {
		return rep, fmt.Errorf("agent: reload: %w", err)
	}
	var removed []*flowRuntime
	for _, fr := range a.flows {
		if oldFlows[fr.cfg.Name] != nil {
			removed = append(removed, fr)
		}
	}

	// The sources of flows that stop make room for their successors'
	// metrics (a source keeps its name, and so its series).
	for _, p := range plans {
		if p.change == flowRebuild {
			for i, r := range p.old.srcRegs {
				if _, kept := p.keep[p.old.srcCfgs[i].Name]; kept {
					continue
				}
				r.unregisterAll()
				undo = append(undo, r.registerAgain)
			}
		}
	}
	for _, fr := range removed {
		for _, r := range fr.srcRegs {
			r.unregisterAll()
			undo = append(undo, r.registerAgain)
		}
	}
	for _, p := range plans {
		switch p.change {
		case flowNewSender:
			p.sender = a.newSender(p.cfg, p.old.spool, outs)
		case flowRebuild:
			fr, err := a.buildFlow(next, p.cfg, p.old.spool, outs, p.old.tap, p.keep)
			if err != nil {
				return rep, err
			}
			undo = append(undo, func() { discardFlow(fr) })
			p.fr = fr
		case flowAdd:
			sp, err := a.openSpool(next, p.cfg.Name)
			if err != nil {
				return rep, err
			}
			undo = append(undo, func() { _ = sp.Close() })
			fr, err := a.buildFlow(next, p.cfg, sp, outs, &tap{}, nil)
			if err != nil {
				return rep, err
			}
			undo = append(undo, func() { discardFlow(fr) })
			p.fr = fr
		}
	}

	// Sources that listen take their addresses now: one that cannot (in
	// use by another program, not of this host) refuses the reload before
	// anything stops. An address a running source holds is freed by its
	// stop below, and taken when the new source runs.
	held := map[string]string{} // address -> the running source on it
	for _, fr := range a.flows {
		for _, src := range fr.sources {
			if b, ok := src.(source.Binder); ok {
				held[b.BindAddress()] = src.Name()
			}
		}
	}
	for _, p := range plans {
		if p.fr == nil {
			continue
		}
		for _, src := range p.fr.sources {
			b, ok := src.(source.Binder)
			if !ok {
				continue
			}
			if _, kept := p.keep[src.Name()]; kept {
				continue
			}
			if _, on := held[b.BindAddress()]; on {
				continue
			}
			if err := b.Bind(); err != nil {
				if name, addr, ok := samePort(b.BindAddress(), held); ok && errors.Is(err, syscall.EADDRINUSE) {
					return rep, fmt.Errorf("agent: reload: flow %s: source %s: %w: the running source %s holds this port on %s "+
						"(a wildcard address, 0.0.0.0 or [::], takes the port on every address of the host): "+
						"a reload cannot move a listener between the two; restart the agent to apply this configuration, "+
						"or move through another port", p.cfg.Name, src.Name(), err, name, addr)
				}
				return rep, fmt.Errorf("agent: reload: flow %s: source %s: %w", p.cfg.Name, src.Name(), err)
			}
			undo = append(undo, b.Release)
		}
	}

	// The sources a rebuilt flow takes over pause: no emit is in flight
	// while the flow behind them is replaced. One blocked for longer than
	// shutdown_timeout (an emit waiting for room in a full spool) refuses
	// the reload.
	pauseCtx, cancelPause := context.WithTimeout(ctx, next.ShutdownTimeout)
	defer cancelPause()
	for _, p := range plans {
		for name, k := range p.keep {
			if !k.run.sw.pause(pauseCtx) {
				if ctx.Err() != nil {
					return rep, errStopping
				}
				return rep, fmt.Errorf("agent: reload: flow %s: its source %s did not pause within shutdown_timeout (it waits for room in a full spool?); try again", p.cfg.Name, name)
			}
			undo = append(undo, func() { k.run.sw.resume(nil, nil) })
		}
	}
	// A stop (SIGTERM) that arrived meanwhile: nothing has stopped yet, so
	// the reload is undone and the shutdown stops the pipeline as it was.
	if ctx.Err() != nil {
		return rep, errStopping
	}

	// 2. Stop what changed. Nothing fails from here on.
	var stopping, swapping []*flowRuntime
	for _, p := range plans {
		switch p.change {
		case flowRebuild:
			// The kept sources are the new flow's: the old one does not
			// stop them.
			p.old.life.srcs = slices.DeleteFunc(p.old.life.srcs, func(r *sourceRun) bool { _, kept := p.keep[r.name]; return kept })
			stopping = append(stopping, p.old)
		case flowNewSender:
			swapping = append(swapping, p.old)
		}
	}
	stopping = append(stopping, removed...)
	rep.Undelivered = a.stopFlows(ctx, next, stopping, removed, swapping)
	for _, bo := range replaced {
		closeOutput(bo, a.log)
	}

	// 3. Start the new parts and publish the pipeline. A stop that arrived
	// while the old parts stopped keeps the new flows' sources from
	// starting (startFlow): the shutdown that follows would only stop them,
	// after they opened their files, took their listeners and read records
	// to drain. Their senders and timers start, for the shutdown to drain
	// what the kept sources (resumed, to return) hand over.
	if ctx.Err() != nil {
		a.log.Info("reload: the agent is stopping: the new flows' sources are not started")
	}
	flows := make([]*flowRuntime, 0, len(plans))
	for _, p := range plans {
		switch p.change {
		case flowKeep:
			flows = append(flows, p.old)
			rep.Kept = append(rep.Kept, p.cfg.Name)
		case flowNewSender:
			fr := &flowRuntime{}
			*fr = *p.old
			fr.cfg = p.cfg
			fr.sender = p.sender
			fr.sender.direct = fr.flow.direct
			fr.sender.adoptHeld(p.old.sender)
			fr.spool.Rewind() // what the old sender read and did not deliver
			a.startSender(ctx, fr)
			if fr.flow.direct != nil {
				fr.flow.directOK.Store(true)
			}
			flows = append(flows, fr)
			rep.OutputsRebuilt = append(rep.OutputsRebuilt, p.cfg.Name)
		case flowRebuild:
			p.fr.spoolMetrics = p.old.spoolMetrics
			p.fr.spool.Rewind()
			runs := map[string]*sourceRun{}
			for name, k := range p.keep {
				runs[name] = k.run
			}
			a.startFlow(ctx, p.fr, runs)
			flows = append(flows, p.fr)
			rep.Rebuilt = append(rep.Rebuilt, p.cfg.Name)
		case flowAdd:
			a.registerSpoolMetrics(p.fr)
			a.startFlow(ctx, p.fr, nil)
			flows = append(flows, p.fr)
			rep.Added = append(rep.Added, p.cfg.Name)
		}
	}
	for _, fr := range removed {
		rep.Removed = append(rep.Removed, fr.cfg.Name)
	}
	a.flows = flows
	a.outputs = outs
	if !reflect.DeepEqual(next.DeadLetter, old.DeadLetter) {
		a.dlq.configure(next.DeadLetter, a.m, a.log.With("component", "dead_letter"))
	}
	a.cfg = next
	for _, p := range plans {
		if p.change != flowKeep {
			a.m.active.DeletePartialMatch(prometheus.Labels{"flow": p.cfg.Name}) // publish sets the current ones
		}
	}
	a.publish()
	for _, fr := range removed {
		a.m.forgetFlow(fr.cfg.Name)
	}
	running := map[string]bool{}
	for _, fr := range flows {
		for _, src := range fr.sources {
			running[src.Name()] = true
		}
	}
	a.m.keepSources(running)
	for _, bo := range replaced {
		if outs[bo.cfg.Name] == nil {
			a.m.forgetOutput(bo.cfg.Name)
		}
	}
	a.log.Info("configuration reloaded", "kept", rep.Kept, "outputs_rebuilt", rep.OutputsRebuilt, "rebuilt", rep.Rebuilt,
		"added", rep.Added, "removed", rep.Removed, "needs_restart", rep.NeedsRestart, "took", time.Since(start).Round(time.Millisecond).String())
	return rep, nil
}

// stopFlows stops, as at shutdown, the flows of stopping (their sources
// stop, their aggregates go to the spool, their senders stop, checkpoints
// move), giving the removed ones shutdown_timeout to deliver what they
// hold first; and stops the senders of swapping, whose sources keep
// running (what they emit meanwhile goes to the spool). It returns what
// the removed flows left undelivered.
func (a *Agent) stopFlows(ctx context.Context, cfg Config, stopping, removed, swapping []*flowRuntime) (undelivered []RemovedBacklog) {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	// A stop of the agent (ctx) during the reload ends these waits: the
	// shutdown that follows has its own deadline, and the two must not add
	// up. What a removed flow did not deliver stays in its spool.
	defer context.AfterFunc(ctx, cancel)()
	for _, fr := range stopping {
		fr.life.stopSources()
	}
	if !waitSources(stopCtx, stopping) {
		a.log.Warn("reload: sources did not stop within shutdown_timeout; their successors may read their last records again")
	}
	a.flushFlows(stopCtx, stopping, true)
	if len(removed) > 0 {
		_ = a.waitDrained(stopCtx, removed, nil)
	}
	for _, fr := range swapping {
		fr.flow.closeDirect() // to the spool until the new sender runs
	}
	a.quiesce(stopCtx, append(slices.Clone(stopping), swapping...))
	finalCtx, cancelFinal := context.WithTimeout(context.WithoutCancel(ctx), stopMargin)
	defer cancelFinal()
	// The swapping flows' senders stop; what their direct path holds is
	// handed to the next sender (adoptHeld), not spilled.
	for _, fr := range swapping {
		fr.life.stopSend()
	}
	if !waitGroupsCtx(finalCtx, swapping, func(l *flowLife) *sync.WaitGroup { return &l.sendWG }) {
		a.log.Warn("reload: senders did not stop in time; what they were sending is sent again")
	}
	left := a.stopSenders(finalCtx, stopping)
	a.stopTimers(finalCtx, stopping)
	for i, fr := range stopping {
		fr.flow.close()
		if !slices.Contains(removed, fr) {
			continue
		}
		ss := fr.spool.Stats()
		if ss.Entries > 0 || left[i].records > 0 {
			a.log.Warn("reload: flow removed before everything was delivered; the rest stays in its spool (sent if the flow comes back) or its files",
				"flow", fr.cfg.Name, "spool_entries", ss.Entries, "unspooled_records", left[i].records)
			undelivered = append(undelivered, RemovedBacklog{Flow: fr.cfg.Name, SpoolEntries: ss.Entries,
				SpoolDir: filepath.Join(a.cfg.Spool.Dir, fr.cfg.Name), FileRecords: left[i].records})
		}
		fr.tap.end()
		if err := fr.spool.Close(); err != nil {
			a.log.Error("closing spool", "flow", fr.cfg.Name, "error", err)
		}
		for _, c := range fr.spoolMetrics {
			a.m.reg.Unregister(c)
		}
	}
	return undelivered
}

// quiesce lets the senders of flows finish the sends they began before
// they are stopped: a Send cut off after the destination took its records
// would be sent again by the next sender (duplicates). It waits until no
// sender delivers, or the one delivering is retrying a failing output
// (which is why it is being replaced, often), or ctx ends. Workers take no
// new batch meanwhile.
func (a *Agent) quiesce(ctx context.Context, flows []*flowRuntime) {
	for _, fr := range flows {
		fr.sender.draining.Store(true)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		busy := false
		for _, fr := range flows {
			s := fr.sender
			o, _ := s.activeOutput()
			if !s.live.idleOrSince() && o.seen.failingSince.Load() == 0 && o.paused() <= 0 {
				busy = true
			}
		}
		if !busy {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// keepRestartSettings returns next with the settings that cannot change
// in a running process set to their running values, and their names when
// they differ.
func keepRestartSettings(old, next Config) (Config, []string) {
	var names []string
	keep := func(name string, differs bool, restore func()) {
		if differs {
			names = append(names, name)
			restore()
		}
	}
	keep("state_dir", next.StateDir != old.StateDir, func() { next.StateDir = old.StateDir })
	keep("spool", !reflect.DeepEqual(next.Spool, old.Spool), func() { next.Spool = old.Spool })
	keep("checkpoint", next.Checkpoint != old.Checkpoint, func() { next.Checkpoint = old.Checkpoint })
	keep("admin.listen", next.Admin.Listen != old.Admin.Listen, func() { next.Admin.Listen = old.Admin.Listen })
	keep("log", next.Log != old.Log, func() { next.Log = old.Log })
	// The CloudWatch publisher is started once and runs for the life of Run.
	keep("metrics", !reflect.DeepEqual(next.Metrics, old.Metrics), func() { next.Metrics = old.Metrics })
	return next, names
}

// sameComponent reports whether two source or output configurations build
// the same thing. A configuration that cannot be compared (it holds a
// function) is taken as changed. One that knows when another spelling is
// the same (a socket's listen: tcp://localhost:5140 is
// tcp://127.0.0.1:5140) says so with Equivalent.
func sameComponent(typeA string, a any, typeB string, b any) bool {
	if typeA != typeB {
		return false
	}
	if eq, ok := a.(interface{ Equivalent(other any) bool }); ok {
		return eq.Equivalent(b)
	}
	return reflect.DeepEqual(a, b)
}

// sameFlowSources reports whether fc names the sources fr runs, configured
// as they were built.
func sameFlowSources(fr *flowRuntime, fc FlowConfig, srcCfg map[string]SourceConfig) bool {
	if !slices.Equal(fr.cfg.Sources, fc.Sources) || len(fr.srcCfgs) != len(fc.Sources) {
		return false
	}
	for i, name := range fc.Sources {
		old, cur := fr.srcCfgs[i], srcCfg[name]
		if !sameComponent(old.Type, old.Config, cur.Type, cur.Config) {
			return false
		}
	}
	return true
}

// sameFlowBody reports whether a and b differ at most in their outputs and
// sender settings.
func sameFlowBody(a, b FlowConfig) bool {
	a.Output, a.Failover, a.Sender = "", "", SenderConfig{}
	b.Output, b.Failover, b.Sender = "", "", SenderConfig{}
	return reflect.DeepEqual(a, b)
}

// keptSources are the sources of fr that the flow fc rebuilt from it takes
// over running: those that cannot replay (their Run holds a listener, its
// connections or a stream) and are configured as they were.
func keptSources(fr *flowRuntime, fc FlowConfig, srcCfg map[string]SourceConfig) map[string]keptSource {
	keep := map[string]keptSource{}
	for i, src := range fr.sources {
		if _, replays := src.(source.Committer); replays {
			continue
		}
		old := fr.srcCfgs[i]
		cur, ok := srcCfg[old.Name]
		if !ok || !slices.Contains(fc.Sources, old.Name) || !sameComponent(old.Type, old.Config, cur.Type, cur.Config) {
			continue
		}
		for _, r := range fr.life.srcs {
			if r.name == old.Name && r.sw != nil {
				keep[old.Name] = keptSource{src: src, cfg: old, reg: fr.srcRegs[i], run: r}
			}
		}
	}
	return keep
}

// discardFlow releases a flow built for a reload that did not happen.
func discardFlow(fr *flowRuntime) {
	fr.flow.close()
	for i, r := range fr.srcRegs {
		if !fr.borrowed[fr.srcCfgs[i].Name] {
			r.unregisterAll()
		}
	}
}

func closeOutput(bo *builtOutput, log interface {
	Warn(msg string, args ...any)
}) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bo.out.Close(ctx); err != nil {
		log.Warn("closing output", "output", bo.cfg.Name, "error", err)
	}
	bo.reg.unregisterAll()
}

// trackedRegisterer registers on reg and remembers what, so a component's
// metrics can be removed when a reload replaces it (and its successor,
// of the same name, registers the same series).
type trackedRegisterer struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	cs  []prometheus.Collector // registered through t, and not removed since
	// gone: removed by unregisterAll, for registerAgain. Apart from cs
	// because the registry unregisters by name and labels, not by
	// collector: a second unregisterAll of them, when the replaced output
	// is closed after its successor registered the same series, would
	// remove the successor's.
	gone []prometheus.Collector
}

func (t *trackedRegisterer) Register(c prometheus.Collector) error {
	if err := t.reg.Register(c); err != nil {
		return err
	}
	t.mu.Lock()
	t.cs = append(t.cs, c)
	t.mu.Unlock()
	return nil
}

func (t *trackedRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

func (t *trackedRegisterer) Unregister(c prometheus.Collector) bool {
	return t.reg.Unregister(c)
}

// unregisterAll removes what was registered through t, each collector
// once (until registerAgain).
func (t *trackedRegisterer) unregisterAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.cs {
		t.reg.Unregister(c)
	}
	t.gone = append(t.gone, t.cs...)
	t.cs = nil
}

// registerAgain registers again what unregisterAll removed.
func (t *trackedRegisterer) registerAgain() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.gone {
		_ = t.reg.Register(c)
	}
	t.cs = append(t.cs, t.gone...)
	t.gone = nil
}

// String is the report as one line ("kept a, b; rebuilt c").
func (r ReloadReport) String() string {
	var parts []string
	add := func(what string, names []string) {
		if len(names) > 0 {
			parts = append(parts, what+" "+strings.Join(names, ", "))
		}
	}
	add("kept", r.Kept)
	add("outputs rebuilt", r.OutputsRebuilt)
	add("rebuilt", r.Rebuilt)
	add("added", r.Added)
	add("removed", r.Removed)
	add("needs a restart:", r.NeedsRestart)
	if len(parts) == 0 {
		return "no flows"
	}
	return strings.Join(parts, "; ")
}

// samePort finds a running source (held: BindAddress -> name) that listens
// on another address of addr's network and port ("tcp 127.0.0.1:5140" and
// "tcp [::]:5140"): where one of the two is a wildcard, the kernel gives
// the port to one socket only. Unix socket paths have no port.
func samePort(addr string, held map[string]string) (name, on string, ok bool) {
	network, hostport, _ := strings.Cut(addr, " ")
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", "", false
	}
	for a, n := range held {
		nw, hp, _ := strings.Cut(a, " ")
		if _, p, err := net.SplitHostPort(hp); err == nil && nw == network && p == port && a != addr {
			return n, a, true
		}
	}
	return "", "", false
}
