package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/spool"
)

// headerFlags collects repeated --header 'Name: value' flags.
type headerFlags map[string]string

func (h headerFlags) String() string { return "" }
func (h headerFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want 'Name: value', got %q", v)
	}
	h[strings.TrimSpace(k)] = strings.TrimSpace(val)
	return nil
}

type tailOptions struct {
	to            string
	once          bool
	fromBeginning bool
	fromEnd       bool
	stateDir      string
	quiet         bool
	admin         string
	logLevel      string
	reset         bool
	partitionKey  string
	sync          string
	spoolMax      string
	concurrency   int
	maxRecord     string
	multiline     string

	httpFormat  string
	headers     headerFlags
	gzip        bool
	bearer      string
	basic       string
	caFile      string
	certFile    string
	keyFile     string
	insecure    bool
	httpTimeout time.Duration
}

func tailFlags(stderr io.Writer) (*flag.FlagSet, *tailOptions) {
	o := &tailOptions{headers: headerFlags{}}
	fs := flag.NewFlagSet("agent tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: agent tail PATH... [flags]

Ships files (quote globs to follow new matches: '/var/log/app/*.log*') like tail -F.
Destinations (--to): - (stdout, default), file:///DIR, http://HOST/PATH, https://HOST/PATH.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.to, "to", "-", "destination URL")
	fs.BoolVar(&o.once, "once", false, "exit once every file was read to its end and everything was delivered (exit 1 if anything was dead-lettered)")
	fs.BoolVar(&o.fromBeginning, "from-beginning", false, "read files without a checkpoint from the beginning (the default)")
	fs.BoolVar(&o.fromEnd, "from-end", false, "read files without a checkpoint from their end (only new lines)")
	fs.StringVar(&o.stateDir, "state-dir", "", "spool, checkpoints and dead-letter file (default: $XDG_STATE_HOME/agent/tail/<id>; a temporary one for stdout)")
	fs.BoolVar(&o.quiet, "quiet", false, "no live status line on a terminal")
	fs.StringVar(&o.admin, "admin", "", "serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:8686)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error (logs go to stderr)")
	fs.BoolVar(&o.reset, "reset", false, "forget saved file positions (the spool's undelivered records are still delivered)")
	fs.StringVar(&o.partitionKey, "partition-key", agent.PartitionKeyRandom, "random or deterministic (a hash of the record)")
	fs.StringVar(&o.sync, "sync", string(spool.SyncInterval), "spool sync policy: always, interval or never")
	fs.StringVar(&o.spoolMax, "spool-max-bytes", "", "spool size cap (e.g. 2GiB); reading pauses when full")
	fs.IntVar(&o.concurrency, "concurrency", 0, "requests in flight to the destination (default 4)")
	fs.StringVar(&o.maxRecord, "max-record-bytes", "", "longer lines are truncated (e.g. 256KiB)")
	fs.StringVar(&o.multiline, "multiline-start", "", "regular expression matching the first line of a multi-line record")
	fs.StringVar(&o.httpFormat, "http-format", "ndjson", "HTTP body: ndjson, json, raw (one KPL aggregate per request) or kafka-rest-v2")
	fs.Var(o.headers, "header", "extra HTTP header 'Name: value' (repeatable)")
	fs.BoolVar(&o.gzip, "gzip", true, "gzip HTTP bodies")
	fs.StringVar(&o.bearer, "bearer-token", os.Getenv("AGENT_BEARER_TOKEN"), "HTTP bearer token (default $AGENT_BEARER_TOKEN)")
	fs.StringVar(&o.basic, "basic-auth", os.Getenv("AGENT_BASIC_AUTH"), "HTTP basic auth USER:PASSWORD (default $AGENT_BASIC_AUTH)")
	fs.StringVar(&o.caFile, "ca-file", "", "CA certificates (PEM) to verify the HTTPS server")
	fs.StringVar(&o.certFile, "cert-file", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&o.keyFile, "key-file", "", "client key (PEM) for mutual TLS")
	fs.BoolVar(&o.insecure, "insecure-skip-verify", false, "do not verify the HTTPS server's certificate (testing only)")
	fs.DurationVar(&o.httpTimeout, "timeout", 0, "HTTP request timeout (default 30s)")
	return fs, o
}

// parseInterspersed parses flags anywhere among positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func cmdTail(args []string, stdout, stderr io.Writer) int {
	fs, o := tailFlags(stderr)
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "agent tail: at least one PATH is required")
		fs.Usage()
		return exitUsage
	}
	if o.fromBeginning && o.fromEnd {
		fmt.Fprintln(stderr, "agent tail: --from-beginning and --from-end exclude each other")
		return exitUsage
	}
	if matched := warnMissing(paths, stderr); o.once && !matched {
		fmt.Fprintln(stderr, "agent tail: no file matches; nothing to ship")
		return exitFailed
	}
	cfg, cleanup, err := tailConfig(paths, o)
	if err != nil {
		fmt.Fprintln(stderr, "agent tail:", err)
		return exitUsage
	}
	defer cleanup()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "agent tail:", err)
		return exitUsage
	}
	log := newLogger(stderr, o.logLevel, "text")
	a, err := agent.New(cfg, agent.Settings{Logger: log, Version: version, Once: o.once, Stdout: stdout, Components: components()})
	if err != nil {
		return exitCode(err, stderr)
	}
	ctx, stop := signalContext(stderr)
	defer stop()
	// The status line shares the terminal with records printed to stdout:
	// only draw it when records go elsewhere.
	if !o.quiet && cfg.Outputs[0].Type != "stdout" && isTerminal(stderr) {
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); statusLine(sctx, a, stderr) }()
		defer func() { cancel(); <-done }()
	}
	err = a.Run(ctx)
	if err != nil && errors.Is(err, ctx.Err()) {
		return exitOK
	}
	return exitCode(err, stderr)
}

// warnMissing tells about paths that match no file now (a typo, or a file
// that does not exist yet: without --once, tail waits for it). It reports
// whether any path matches a file (or cannot be checked here: ** patterns).
func warnMissing(paths []string, stderr io.Writer) bool {
	found := false
	for _, p := range paths {
		if strings.Contains(p, "**") {
			found = true
			continue
		}
		m, err := filepath.Glob(p)
		if err == nil && len(m) > 0 {
			found = true
			continue
		}
		fmt.Fprintf(stderr, "agent tail: %s: no such file (yet)\n", p)
	}
	return found
}

// tailConfig turns the command line into the same Config a daemon reads.
func tailConfig(paths []string, o *tailOptions) (agent.Config, func(), error) {
	cleanup := func() {}
	cfg := agent.DefaultConfig()
	cfg.Log.Level = o.logLevel
	cfg.Admin.Listen = o.admin
	cfg.ShutdownTimeout = 5 * time.Second

	var include []string
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return cfg, cleanup, err
		}
		include = append(include, abs)
	}
	out, err := destination(o)
	if err != nil {
		return cfg, cleanup, err
	}
	switch {
	case o.stateDir != "":
		cfg.StateDir = o.stateDir
	case o.to == "" || o.to == "-":
		// Nothing to resume for a terminal: each run starts afresh.
		dir, err := os.MkdirTemp("", "agent-tail-")
		if err != nil {
			return cfg, cleanup, err
		}
		cfg.StateDir = dir
		cleanup = func() { os.RemoveAll(dir) }
	default:
		dir, err := defaultTailStateDir(include, o.to)
		if err != nil {
			return cfg, cleanup, err
		}
		cfg.StateDir = dir
	}
	cfg.Spool.Dir = filepath.Join(cfg.StateDir, "spool")
	cfg.Spool.Sync = spool.SyncPolicy(o.sync)
	if o.spoolMax != "" {
		v, err := units.ParseByteSize(o.spoolMax)
		if err != nil {
			return cfg, cleanup, fmt.Errorf("--spool-max-bytes: %w", err)
		}
		cfg.Spool.MaxBytes = v
	}
	if o.reset {
		if err := os.Remove(filepath.Join(cfg.StateDir, "checkpoints.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return cfg, cleanup, err
		}
	}

	src, err := tailSource(include, o, components())
	if err != nil {
		return cfg, cleanup, err
	}
	cfg.Sources = []agent.SourceConfig{src}
	out.Name = "destination"
	cfg.Outputs = []agent.OutputConfig{out}
	flow := agent.DefaultFlowConfig()
	flow.Name = "tail"
	flow.Sources = []string{"tail"}
	flow.Output = out.Name
	flow.PartitionKey = o.partitionKey
	if o.concurrency > 0 {
		flow.Sender.Concurrency = o.concurrency
	}
	cfg.Flows = []agent.FlowConfig{flow}
	return cfg, cleanup, nil
}

// defaultTailStateDir is $XDG_STATE_HOME/agent/tail/<id>, where id names the
// set of paths and the destination, so distinct tails never share a spool.
func defaultTailStateDir(include []string, to string) (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no state directory: set --state-dir or $XDG_STATE_HOME: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	sorted := append([]string(nil), include...)
	sort.Strings(sorted)
	h := sha256.Sum256([]byte(strings.Join(sorted, "\x00") + "\x00" + to))
	return filepath.Join(base, "agent", "tail", hex.EncodeToString(h[:6])), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// statusLine redraws one line on stderr every second.
func statusLine(ctx context.Context, a *agent.Agent, w io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := a.Snapshot()
	prevT := time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case now := <-t.C:
			s := a.Snapshot()
			dt := now.Sub(prevT).Seconds()
			fmt.Fprintf(w, "\r\033[K%s rec/s  %s/s  sent %s  backlog %d (%s)  retries %d  dead-lettered %d",
				human(float64(s.RecordsRead-prev.RecordsRead)/dt), humanBytes(float64(s.BytesRead-prev.BytesRead)/dt),
				human(float64(s.RecordsSent)), s.BacklogEntries, humanBytes(float64(s.BacklogBytes)), s.Retries, s.DeadLettered)
			prev, prevT = s, now
		}
	}
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func humanBytes(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.1f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}
