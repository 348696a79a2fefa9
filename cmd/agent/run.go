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
	"strings"
	"sync"
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
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if extraArgs(fs, stderr, "the configuration file is given with -c FILE") {
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
		printConfigError(stderr, "agent run", err)
		return exitUsage
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	sd := newSystemd(log)
	defer sd.close()
	var a *agent.Agent
	log.Info("agent starting", "version", version, "commit", buildCommit(), "go", runtime.Version(), "config", *cfgPath, "admin", cfg.Admin.Listen)
	logNotices(log, cfg)
	warnForeignStateDir(log, cfg.StateDir, "agent run -c "+*cfgPath)
	signal.Ignore(syscall.SIGPIPE) // a closed stdout fails the write (EPIPE) instead of killing the daemon

	reloads := newReloadQueue()
	loopDone := make(chan struct{}) // closed once no reload will be taken
	endLoop := sync.OnceFunc(func() { reloads.refuseQueued(); close(loopDone) })
	requestReload := reloads.request
	ctx, stop := earlySignals.watch(signalOptions{log: log, stderr: stderr, reload: func() { requestReload() }})
	defer stop()
	var adm *agent.Admin
	if l := cfg.Admin.Listen; l != "" && l != "off" {
		// One endpoint for the process: it stays up across reloads.
		if adm, err = agent.StartAdmin(l, log.With("component", "admin")); err != nil {
			return exitCode("agent run", err, stderr)
		}
		defer adm.Close()
		defer endLoop() // before the admin endpoint waits for its requests
		adm.SetReload(func() (string, error) {
			// A request is answered by the reload it started, applied or
			// not, even when a stop signal comes meanwhile (answering
			// "stopping" then would say a reload that went through was
			// refused); one the loop did not take is refused when it ends.
			reply := requestReload()
			select {
			case r := <-reply:
				return r.note, r.err
			case <-loopDone:
			}
			select {
			case r := <-reply:
				return r.note, r.err
			default: // queued after the loop ended
				return "", errors.New("the agent is stopping")
			}
		})
	}
	a, err = agent.New(cfg, agent.Settings{Logger: log, Version: version, Commit: buildCommit(), Stdout: stdout,
		OnReady: func() { sd.ready(a) }, Components: components(), Admin: adm})
	if err != nil {
		if h := permissionHint(err, cfg.StateDir); h != "" {
			log.Error("permission denied", "hint", h)
		}
		return exitCode("agent run", err, stderr)
	}
	stopWatch := watchStop(ctx, sd.stopping)
	defer stopWatch()
	r := &reloader{log: log, path: *cfgPath, adm: adm, sd: sd, logFormat: *logFormat}
	err = r.run(ctx, a, reloads.ch)
	endLoop()
	sd.stopping()
	if err != nil && !errors.Is(err, ctx.Err()) {
		if h := permissionHint(err, cfg.StateDir); h != "" {
			log.Error("agent stopped", "error", err, "hint", h)
		} else {
			log.Error("agent stopped", "error", err)
		}
		return exitFailed
	}
	log.Info("agent stopped")
	return exitOK
}

// reloadQueue passes reload requests (SIGHUP, agent reload) to the
// pipeline loop. A request made while a reload runs waits for it, then
// reloads again: it reads the file as it is by then, so an edit made during
// a reload is applied. Requests beyond that one are the same request.
type reloadQueue struct{ ch chan chan reloadResult }

// reloadResult is how a reload went: applied (with a note for the
// operator, or "") or refused (err).
type reloadResult struct {
	note string
	err  error
}

func newReloadQueue() *reloadQueue { return &reloadQueue{ch: make(chan chan reloadResult, 1)} }

// request queues a reload; the reply says how it went.
func (q *reloadQueue) request() chan reloadResult {
	reply := make(chan reloadResult, 1)
	select {
	case q.ch <- reply:
	default:
		reply <- reloadResult{err: errors.New("a reload is already waiting to run (it reads the configuration when it starts)")}
	}
	return reply
}

// refuseQueued answers a request still queued when the agent stops.
func (q *reloadQueue) refuseQueued() {
	select {
	case reply := <-q.ch:
		reply <- reloadResult{err: errors.New("the agent is stopping")}
	default:
	}
}

// reloader runs the pipeline and applies reloads to it: at SIGHUP or
// `agent reload` the configuration is read and validated again (a bad one
// is logged and the running pipeline stays), then applied to the running
// pipeline (agent.Reload): unchanged flows keep running untouched, changed
// ones are rebuilt on their spools, removed ones stop, new ones start.
type reloader struct {
	log       *slog.Logger
	path      string
	adm       *agent.Admin
	sd        *systemd
	logFormat string
}

// run runs a until ctx ends or it fails, applying the reloads asked for
// meanwhile, and returns Run's error.
func (r *reloader) run(ctx context.Context, a *agent.Agent, reloads chan chan reloadResult) error {
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	for {
		select {
		case err := <-errc:
			return err
		case reply := <-reloads:
			reply <- r.reload(ctx, a)
		}
	}
}

// reload reads the configuration file and applies it to a.
func (r *reloader) reload(ctx context.Context, a *agent.Agent) reloadResult {
	cfg, err := r.load()
	if err != nil {
		r.log.Error("reload refused; the running configuration stays", "config", r.path, "error", err)
		r.count("failed")
		a.RecordReload(err)
		return reloadResult{err: err}
	}
	r.sd.reloading()
	rep, err := a.Reload(ctx, cfg)
	r.sd.ready(a) // RELOADING=1 ends with READY=1, applied or not
	if err != nil {
		r.log.Error("reload refused; the running configuration stays", "config", r.path, "error", err)
		r.count("failed")
		a.RecordReload(err)
		return reloadResult{err: err}
	}
	r.count("ok")
	a.RecordReload(nil)
	var notes []string
	if len(rep.NeedsRestart) > 0 {
		notes = append(notes, fmt.Sprintf("restart the agent to apply the changes to %s (their running values stay)", strings.Join(rep.NeedsRestart, ", ")))
	}
	for _, u := range rep.Undelivered {
		// Said to whoever removed the flow: a WARN in the journal alone
		// goes unseen, and the backlog leaves agent status with its flow.
		n := fmt.Sprintf("flow %s was removed before it delivered everything (shutdown_timeout):", u.Flow)
		if u.SpoolEntries > 0 {
			n += fmt.Sprintf(" %d spool entries stay in %s, sent if a flow named %s comes back (deleting the directory discards them);", u.SpoolEntries, u.SpoolDir, u.Flow)
		}
		if u.FileRecords > 0 {
			n += fmt.Sprintf(" %d records read from files were not spooled: their files are read from before them by a flow that reads them again;", u.FileRecords)
		}
		notes = append(notes, strings.TrimSuffix(n, ";"))
	}
	for _, n := range cfg.Notices() {
		if n.Level >= slog.LevelWarn {
			notes = append(notes, n.String()) // agent reload shows them too
		}
	}
	return reloadResult{note: strings.Join(notes, "\n")}
}

// load reads and validates the configuration file.
func (r *reloader) load() (agent.Config, error) {
	cfg, err := agent.LoadConfig(r.path, components())
	if err != nil {
		return cfg, err
	}
	if r.logFormat != "" {
		cfg.Log.Format = r.logFormat
	}
	logNotices(r.log, cfg)
	return cfg, nil
}

// logNotices logs what loading the configuration had to tell (a setting
// without effect, a derived default) at its level.
func logNotices(log *slog.Logger, cfg agent.Config) {
	for _, n := range cfg.Notices() {
		log.Log(context.Background(), n.Level, "config: "+n.Msg, "config", n.Place(), "key", n.Path)
	}
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
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	paths := fs.Args()
	cSet := false
	fs.Visit(func(f *flag.Flag) { cSet = cSet || f.Name == "c" || f.Name == "config" })
	if len(paths) == 0 || cSet {
		// -c a.yaml b.yaml checks both: -c was not to be dropped silently.
		paths = append([]string{*cfgPath}, paths...)
	}
	code := exitOK
	for _, p := range paths {
		cfg, err := agent.LoadConfig(p, components())
		if err != nil {
			printConfigError(stderr, "agent validate", err)
			code = exitUsage
			continue
		}
		// Warnings and notes do not fail validation: the agent runs
		// with them.
		for _, n := range cfg.Notices() {
			fmt.Fprintln(stderr, n)
		}
		fmt.Fprintf(stdout, "%s: ok\n", p)
	}
	return code
}

// warnForeignStateDir warns, once at start, when the agent runs as root in
// a state directory that belongs to another user (the service's): see
// foreignStateDir. cmd is the command to run as that user instead.
func warnForeignStateDir(log *slog.Logger, dir, cmd string) {
	owner, name, ok := foreignStateDir(dir)
	if !ok {
		return
	}
	log.Warn("running as root in a state_dir that belongs to another user: the files made there now are root's, "+
		"and the agent running as that user (the service) fails on them until they are given back",
		"state_dir", dir, "owner", owner, "instead", "sudo -u "+name+" "+cmd, "give_back", "chown -R "+name+": "+dir)
}
