package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
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
	var a *agent.Agent
	a, err = agent.New(cfg, agent.Settings{Logger: log, Version: version, Commit: buildCommit(), Stdout: stdout,
		OnReady: func() { sd.ready(a) }, Components: components()})
	if err != nil {
		return exitCode(err, stderr)
	}
	log.Info("agent starting", "version", version, "commit", buildCommit(), "go", runtime.Version(), "config", *cfgPath, "admin", cfg.Admin.Listen)
	signal.Ignore(syscall.SIGPIPE) // a closed stdout fails the write (EPIPE) instead of killing the daemon
	ctx, stop := watchSignals(signalOptions{log: log, stderr: stderr})
	defer stop()
	stopWatch := watchStop(ctx, sd.stopping)
	err = a.Run(ctx)
	stopWatch()
	sd.stopping()
	if err != nil && !errors.Is(err, ctx.Err()) {
		log.Error("agent stopped", "error", err)
		return exitFailed
	}
	log.Info("agent stopped")
	return exitOK
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
