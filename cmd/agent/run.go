package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/kplagent/agent/agent"
)

const defaultConfigPath = "/etc/agent/agent.yaml"

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", defaultConfigPath, "config file")
	fs.StringVar(cfgPath, "config", defaultConfigPath, "config file")
	logFormat := fs.String("log-format", "", "auto, text or json (overrides log.format; auto: JSON when stderr is the systemd journal, text otherwise)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	switch *logFormat {
	case "", "auto", "text", "json":
	default:
		fmt.Fprintf(stderr, "agent run: --log-format: unknown %q (want auto, text or json)\n", *logFormat)
		return exitUsage
	}
	cfg, err := agent.LoadConfig(*cfgPath, components())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	sd := newSystemd(log)
	defer sd.close()
	var cur *agent.Agent
	settings := func() agent.Settings {
		return agent.Settings{Logger: log, Version: version, Commit: buildCommit(), Stdout: stdout,
			OnReady: func() { sd.ready(cur) }, Components: components()}
	}
	log.Info("agent starting", "version", version, "commit", buildCommit(), "go", runtime.Version(), "config", *cfgPath, "admin", cfg.Admin.Listen)
	signal.Ignore(syscall.SIGPIPE) // a closed stdout fails the write (EPIPE) instead of killing the daemon

	reloads := newReloadQueue()
	requestReload := reloads.request
	ctx, stop := watchSignals(signalOptions{log: log, stderr: stderr, reload: func() { requestReload() }})
	defer stop()
	var adm *agent.Admin
	if l := cfg.Admin.Listen; l != "" && l != "off" {
		// One endpoint for the process: it stays up across reloads.
		if adm, err = agent.StartAdmin(l, log.With("component", "admin")); err != nil {
			return exitCode(err, stderr)
		}
		defer adm.Close()
		adm.SetReload(func() error {
			select {
			case err := <-requestReload():
				return err
			case <-ctx.Done():
				return errors.New("the agent is stopping")
			}
		})
	}
	set := settings()
	set.Admin = adm
	a, err := agent.New(cfg, set)
	if err != nil {
		return exitCode(err, stderr)
	}
	stopWatch := watchStop(ctx, sd.stopping)
	defer stopWatch()
	r := &reloader{log: log, path: *cfgPath, cfg: cfg, adm: adm, sd: sd, settings: settings, logFormat: *logFormat}
	for {
		cur = a
		next, err := r.runUntilReload(ctx, a, reloads.ch)
		if next == nil {
			reloads.refuseQueued()
			sd.stopping()
			if err != nil && !errors.Is(err, ctx.Err()) {
				log.Error("agent stopped", "error", err)
				return exitFailed
			}
			log.Info("agent stopped")
			return exitOK
		}
		a = next
	}
}

// reloadQueue passes reload requests (SIGHUP, agent reload) to the
// pipeline loop. A request made while a reload runs waits for it, then
// reloads again: it reads the file as it is by then, so an edit made during
// a reload is applied. Requests beyond that one are the same request.
type reloadQueue struct{ ch chan chan error }

func newReloadQueue() *reloadQueue { return &reloadQueue{ch: make(chan chan error, 1)} }

// request queues a reload; the reply says how it went.
func (q *reloadQueue) request() chan error {
	reply := make(chan error, 1)
	select {
	case q.ch <- reply:
	default:
		reply <- errors.New("a reload is already waiting to run (it reads the configuration when it starts)")
	}
	return reply
}

// refuseQueued answers a request still queued when the agent stops.
func (q *reloadQueue) refuseQueued() {
	select {
	case reply := <-q.ch:
		reply <- errors.New("the agent is stopping")
	default:
	}
}

// reloader runs one pipeline after another: at SIGHUP or `agent reload`
// the configuration is read and validated again (a bad one is logged and
// the running pipeline stays), then the running pipeline stops as at
// shutdown (sources stop, aggregates go to the spool, checkpoints are
// saved) and one built from the new configuration starts, in the same
// process, behind the same admin endpoint, on the same spools and state.
type reloader struct {
	log       *slog.Logger
	path      string
	cfg       agent.Config
	adm       *agent.Admin
	sd        *systemd
	settings  func() agent.Settings
	logFormat string
}

// runUntilReload runs a until ctx ends or it fails (it returns nil and
// Run's error), or until a reload was accepted (it returns the next
// pipeline, once a stopped).
func (r *reloader) runUntilReload(ctx context.Context, a *agent.Agent, reloads chan chan error) (*agent.Agent, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.Run(runCtx) }()
	for {
		select {
		case err := <-errc:
			return nil, err
		case reply := <-reloads:
			next, err := r.prepare()
			if err != nil {
				r.log.Error("reload refused; the running configuration stays", "config", r.path, "error", err)
				r.count("failed")
				reply <- err
				continue
			}
			r.log.Info("reloading: stopping the running pipeline", "config", r.path)
			r.sd.reloading()
			cancel()
			if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
				r.count("failed")
				reply <- err
				return nil, err
			}
			if ctx.Err() != nil { // a stop signal arrived meanwhile
				reply <- errors.New("the agent is stopping")
				return nil, nil
			}
			r.count("ok")
			r.log.Info("reloaded: starting the new pipeline")
			reply <- nil
			return next, nil
		}
	}
}

// prepare reads and validates the configuration and builds the next
// pipeline (not started).
func (r *reloader) prepare() (*agent.Agent, error) {
	// A stream (standard input, a FIFO) is not handed from one pipeline to
	// the next: the stopped source's pending read would take the next
	// chunk and its begun line would be dropped. Restarting ends the
	// stream; the operator chooses.
	for _, s := range r.cfg.Sources {
		if s.Type == "stdin" {
			return nil, fmt.Errorf("source %q reads a stream (type stdin), which a reload would cut (records lost); restart the agent to apply the new configuration", s.Name)
		}
	}
	cfg, err := agent.LoadConfig(r.path, components())
	if err != nil {
		return nil, err
	}
	if r.logFormat != "" {
		cfg.Log.Format = r.logFormat
	}
	if cfg.Admin.Listen != r.cfg.Admin.Listen {
		r.log.Warn("reload: admin.listen changes take effect at the next restart", "listening", r.cfg.Admin.Listen, "configured", cfg.Admin.Listen)
		cfg.Admin.Listen = r.cfg.Admin.Listen
	}
	if cfg.Log != r.cfg.Log {
		r.log.Warn("reload: log.level and log.format changes take effect at the next restart")
	}
	set := r.settings()
	set.Admin = r.adm
	a, err := agent.New(cfg, set)
	if err != nil {
		return nil, err
	}
	r.cfg = cfg
	return a, nil
}

func (r *reloader) count(result string) {
	if r.adm != nil {
		r.adm.CountReload(result)
	}
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", defaultConfigPath, "config file")
	fs.StringVar(cfgPath, "config", defaultConfigPath, "config file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{*cfgPath}
	}
	code := exitOK
	for _, p := range paths {
		if _, err := agent.LoadConfig(p, components()); err != nil {
			fmt.Fprintln(stderr, err)
			code = exitUsage
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", p)
	}
	return code
}
