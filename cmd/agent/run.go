package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/kplagent/agent/agent"
)

const defaultConfigPath = "/etc/agent/agent.yaml"

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", defaultConfigPath, "config file")
	fs.StringVar(cfgPath, "config", defaultConfigPath, "config file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cfg, err := agent.LoadConfig(*cfgPath, components())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	a, err := agent.New(cfg, agent.Settings{Logger: log, Version: version, Stdout: stdout, OnReady: notifyReady, Components: components()})
	if err != nil {
		return exitCode(err, stderr)
	}
	signal.Ignore(syscall.SIGPIPE) // a closed stdout fails the write (EPIPE) instead of killing the daemon
	ctx, stop := watchSignals(signalOptions{log: log, stderr: stderr})
	defer stop()
	err = a.Run(ctx)
	notifyStopping()
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
