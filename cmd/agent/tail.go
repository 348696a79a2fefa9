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
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/agent/process"
	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/internal/redact"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs"
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

// dirsFlag collects the directories of a repeatable flag, in order.
type dirsFlag []string

func (s *dirsFlag) String() string { return strings.Join(*s, ",") }
func (s *dirsFlag) Set(v string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return errors.New("empty directory")
	case strings.ContainsAny(v, "*?["):
		return errors.New("a directory, not a pattern")
	}
	*s = append(*s, v)
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
	spoolBypass   bool
	maxRecord     string
	multiline     string
	rotatedDirs   dirsFlag
	format        string
	maxRetry      time.Duration
	encoding      string
	envelope      string
	logFormat     string
	addHost       string
	singleLine    bool

	httpFormat  string
	headers     headerFlags
	gzip        bool
	compression string
	bearer      string
	basic       string
	caFile      string
	certFile    string
	keyFile     string
	insecure    bool
	httpTimeout time.Duration

	// set are the flags given on the command line, by name.
	set map[string]bool
}

func tailFlags(stderr io.Writer) (*flag.FlagSet, *tailOptions) {
	o := &tailOptions{headers: headerFlags{}}
	fs := flag.NewFlagSet("agent tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: agent tail PATH|SOCKET... [flags]

Ships files (quote globs to follow new matches: '/var/log/app/*.log*') like tail -F.
PATH - reads standard input, and a named pipe is read as a stream, until its end.
SOCKET listens: unix:///run/app.sock, unixgram:///run/app.dgram, tcp://127.0.0.1:5140,
udp://127.0.0.1:5140 (records parsed per --format), until interrupted.
Destinations (--to): - or stdout: (standard output, default), file:///DIR, http://HOST/PATH, https://HOST/PATH,
  kinesis://STREAM?region=R[&endpoint=URL][&protocol=cbor|json][&role_arn=ARN][&rate_limit=150|off][&aggregation=false]
  [&max_record_bytes=1MiB][&shard_map_refresh=1m] (Kinesis Data Streams; KPL aggregates built per shard),
  firehose://STREAM?region=R[&endpoint=URL][&role_arn=ARN][&aggregate_lines=false] (Firehose).
  kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?compression=zstd&key=none&tls=true...] (one Kafka
  record per line; the parameters are the keys of the config file's kafka: block),
  blackhole: (discards everything, counted as sent: for measuring the rest of the pipeline).
  AWS credentials: the SDK's default chain (environment, profile, SSO, IMDS...).
stdout and file:// keep each input's order byte for byte (one request at a time).

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.to, "to", "-", "destination URL")
	fs.BoolVar(&o.once, "once", false, "exit once every file was read to its end and everything was delivered (exit 1 if anything was dead-lettered, a named file cannot be read, or an interruption left records undelivered or files unread)")
	fs.BoolVar(&o.fromBeginning, "from-beginning", false, "read files without a checkpoint from the beginning (the default)")
	fs.BoolVar(&o.fromEnd, "from-end", false, "read files without a checkpoint from their end (only new lines)")
	fs.StringVar(&o.stateDir, "state-dir", "", "spool, checkpoints and dead-letter file (default: $XDG_STATE_HOME/agent/tail/<id>; a temporary one for stdout)")
	fs.BoolVar(&o.quiet, "quiet", false, "no live status line on a terminal")
	fs.StringVar(&o.admin, "admin", "", "serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:7219)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error (logs go to stderr)")
	fs.BoolVar(&o.reset, "reset", false, "forget saved file positions (the spool's undelivered records are still delivered)")
	fs.StringVar(&o.partitionKey, "partition-key", agent.PartitionKeyRandom, "random, deterministic (a hash of the record), hostname, field:NAME, regex:RE (its first group) or fixed:VALUE; for destinations that send the key: kinesis, kafka, http with raw, raw-packed or kafka-rest formats")
	fs.StringVar(&o.encoding, "encoding", "", "how records are written: json (one object per record; the default for http) or text (the lines as they are; the default for stdout and file://)")
	fs.StringVar(&o.envelope, "envelope", "", "fields to add to each record, comma-separated: timestamp, host, file, offset, source (rename with =NAME: host=hostname); makes records JSON objects")
	fs.BoolVar(&o.singleLine, "single-line", false, "collapse multi-line records into one line (single_line)")
	fs.StringVar(&o.logFormat, "log-format", "", "parse records as apache_common, apache_combined, nginx_combined, apache_error, syslog_rfc3164 or syslog_rfc5424 into JSON objects (log_to_json)")
	fs.StringVar(&o.addHost, "add-hostname", "", "add the host name to each record under this field (add_fields)")
	fs.StringVar(&o.sync, "sync", string(spool.SyncInterval), "spool sync policy: always, interval or never")
	fs.StringVar(&o.spoolMax, "spool-max-bytes", "", "spool size cap (e.g. 2GiB; at least 16KiB); reading pauses when full")
	fs.BoolVar(&o.spoolBypass, "spool-bypass", true, "file sources: aggregates go to the destination in memory while it keeps up (false: every aggregate through the spool)")
	fs.IntVar(&o.concurrency, "concurrency", 0, "requests in flight to the destination (default 4; 3 for kafka://; 1 for stdout and file://, which keeps order)")
	fs.StringVar(&o.maxRecord, "max-record-bytes", "", "longer lines are truncated (e.g. 256KiB)")
	fs.DurationVar(&o.maxRetry, "max-retry-duration", 0, "dead-letter what the destination still refuses after this long (default 0: retry forever)")
	fs.StringVar(&o.multiline, "multiline-start", "", "files: regular expression matching the first line of a multi-line record")
	fs.Var(&o.rotatedDirs, "rotated-dir", "files: another `DIR` where rotations are looked for (logrotate's olddir: renamed, copied or compressed while the agent lagged or was stopped); a relative DIR is relative to each file's directory; repeatable (rotated_dirs)")
	fs.StringVar(&o.format, "format", "", "records received on sockets: lines (default), json (checked) or syslog (RFC 5424/3164 parsed into JSON)")
	fs.StringVar(&o.httpFormat, "http-format", "ndjson", "HTTP body: ndjson, json, raw (one KPL aggregate per request), raw-packed (many, length-prefixed), kafka-rest-v2 or kafka-rest-v3 (Confluent REST Proxy)")
	fs.Var(o.headers, "header", "extra HTTP header 'Name: value' (repeatable)")
	fs.BoolVar(&o.gzip, "gzip", true, "gzip HTTP bodies (--gzip=false: --compression none)")
	fs.StringVar(&o.compression, "compression", "", "HTTP body compression: gzip (default), zstd or none; overrides --gzip")
	fs.StringVar(&o.bearer, "bearer-token", os.Getenv("AGENT_BEARER_TOKEN"), "HTTP bearer token (default $AGENT_BEARER_TOKEN)")
	fs.StringVar(&o.basic, "basic-auth", os.Getenv("AGENT_BASIC_AUTH"), "HTTP basic auth USER:PASSWORD (default $AGENT_BASIC_AUTH)")
	fs.StringVar(&o.caFile, "ca-file", "", "CA certificates (PEM) to verify the HTTPS server or the Kafka brokers (with kafka://, a TLS flag enables TLS)")
	fs.StringVar(&o.certFile, "cert-file", "", "client certificate (PEM) for mutual TLS (HTTPS or Kafka)")
	fs.StringVar(&o.keyFile, "key-file", "", "client key (PEM) for mutual TLS")
	fs.BoolVar(&o.insecure, "insecure-skip-verify", false, "do not verify the HTTPS server's or Kafka brokers' certificates (testing only)")
	fs.DurationVar(&o.httpTimeout, "timeout", 0, "request timeout of the HTTP, Kinesis and Firehose destinations (default 30s; for Kafka use ?send_timeout=)")
	return fs, o
}

// stdoutAlias maps stdout: (the config's output type, written like
// blackhole:) to -, standard output, so that both name one destination (and
// one state directory).
// parseTailArgs parses the PATH... and flags of agent tail (and of
// agent dead-letter replay --tail, which takes the same): code and ok are
// parseArgs'.
func parseTailArgs(args []string, stdout, stderr io.Writer) (fs *flag.FlagSet, o *tailOptions, paths []string, code int, ok bool) {
	fs, o = tailFlags(stderr)
	code, ok = parseArgs(fs, stdout, stderr, func() (err error) {
		paths, err = parseInterspersed(fs, args)
		o.to = stdoutAlias(o.to)
		return err
	})
	return fs, o, paths, code, ok
}

func stdoutAlias(to string) string {
	switch strings.ToLower(to) {
	case "stdout:", "stdout://":
		return "-"
	}
	return to
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

func cmdTail(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	start := time.Now()
	fs, o, paths, code, ok := parseTailArgs(args, stdout, stderr)
	if !ok {
		return code
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "agent tail: at least one PATH is required")
		fs.Usage()
		return exitUsage
	}
	if o.fromBeginning && o.fromEnd {
		fmt.Fprintln(stderr, "agent tail: --from-beginning and --from-end exclude each other")
		return exitUsage
	}
	// Negative values were taken as the defaults, silently.
	for _, neg := range []struct {
		flag string
		bad  bool
	}{
		{"--concurrency", o.concurrency < 0},
		{"--timeout", o.httpTimeout < 0},
		{"--max-retry-duration", o.maxRetry < 0},
	} {
		if neg.bad {
			fmt.Fprintf(stderr, "agent tail: %s must not be negative\n", neg.flag)
			return exitUsage
		}
	}
	// The destination first: a usage error there (a bad URL, a flag the
	// destination does not take) is told before the inputs are looked at.
	out, err := destination(o)
	if err != nil {
		fmt.Fprintln(stderr, "agent tail:", err)
		return exitUsage
	}
	in, err := classifyInputs(paths)
	if err != nil {
		fmt.Fprintln(stderr, "agent tail:", err)
		return exitUsage
	}
	if err := checkSpoolBypassFlag(in, out.Type, o); err != nil {
		fmt.Fprintln(stderr, "agent tail:", err)
		return exitUsage
	}
	if err := checkInputFlags(in, o.set); err != nil {
		fmt.Fprintln(stderr, "agent tail:", err)
		return exitUsage
	}
	if o.reset && o.stateDir == "" && out.Type == "stdout" {
		fmt.Fprintln(stderr, "agent tail: --reset does not apply to a stdout destination without --state-dir (each run starts afresh, with no saved positions)")
		return exitUsage
	}
	if o.format != "" && len(in.sockets) == 0 {
		fmt.Fprintln(stderr, "agent tail: --format applies to socket inputs (unix://, unixgram://, tcp://, udp://)")
		return exitUsage
	}
	if o.once && len(in.sockets) > 0 {
		fmt.Fprintln(stderr, "agent tail: --once does not apply to sockets (they have no end); stop with Ctrl-C or SIGTERM")
		return exitUsage
	}
	if len(in.files) > 0 {
		// A directory never becomes a file to follow: without --once the
		// run went on, following nothing, until interrupted. A file that
		// cannot be read may become readable (a chmod): it is waited for.
		isDir := false
		for _, p := range in.files {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() && !hasGlobMeta(p) {
				isDir = true
			}
		}
		if bad := unreadable(in.files, stderr); (o.once && bad) || isDir {
			return exitFailed
		}
		if matched := warnMissing(in.files, stderr); o.once && !matched && !in.hasStreams() && len(in.sockets) == 0 {
			fmt.Fprintln(stderr, "agent tail: no file matches; nothing to ship")
			return exitFailed
		}
	}
	// A stream ends: with nothing else to follow, the run ends with it
	// (everything read is delivered first, as with --once).
	once := o.once || in.onlyStreams()
	cfg, tmp, err := tailConfig(in, o)
	if err != nil {
		fmt.Fprintln(stderr, "agent tail:", err)
		return exitUsage
	}
	cleanup := func() {
		if tmp {
			os.RemoveAll(cfg.StateDir)
		}
	}
	defer cleanup()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "agent tail:", tailValidationText(err))
		return exitUsage
	}
	if bad := checkRotatedDirs(cfg, stderr); bad {
		return exitUsage
	}
	hadCheckpoints := !tmp && fileExists(filepath.Join(cfg.StateDir, "checkpoints.json"))
	toStdout := cfg.Outputs[0].Type == "stdout"
	// The status line shares the terminal with records printed to stdout:
	// only draw it when records go elsewhere. While it is shown, the log
	// and the Ctrl-C hint write through it (termStatus): each line clears
	// it first and draws it again after.
	var status *termStatus
	errw := stderr
	if !o.quiet && !toStdout && isTerminal(stderr) {
		f := stderr.(*os.File) // isTerminal
		status = &termStatus{w: stderr, visible: func() bool { return inForeground(f) }}
		errw = status
	}
	log := newLogger(errw, o.logLevel, "text")
	if o.stateDir != "" {
		warnForeignStateDir(log, cfg.StateDir, "agent tail ...")
	}

	// A closed stdout fails the write (EPIPE) instead of killing the
	// process: the agent then stops quietly and cleans up.
	signal.Ignore(syscall.SIGPIPE)
	hint, showHint := "", func() bool { return true }
	if isTerminal(stderr) {
		hint = "agent tail: stopping after delivering what was read (a second Ctrl-C exits at once)"
		f := stderr.(*os.File)
		showHint = func() bool { return inForeground(f) }
	}
	sigCtx, stopSignals := earlySignals.watch(signalOptions{log: log, stderr: errw, hint: hint, showHint: showHint, beforeExit: cleanup})
	defer stopSignals()
	ctx, cancel := context.WithCancelCause(sigCtx)
	defer cancel(nil)

	set := agent.Settings{Logger: log, Version: version, Once: once, Stdout: stdout, Stdin: stdin, Components: components()}
	if toStdout {
		// Without state to keep (a temporary directory), what the reader
		// no longer takes is dropped; with --state-dir it stays in the spool
		// for the next run.
		pw := &readerGoneWriter{w: stdout, discard: tmp, gone: func() { cancel(errReaderGone) }}
		set.Stdout = pw
		if f, ok := stdout.(*os.File); ok {
			wctx, stopWatch := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); watchReaderGone(wctx, f, pw.markGone) }()
			defer func() { stopWatch(); <-done }()
		}
	}
	a, err := agent.New(cfg, set)
	if err != nil {
		return exitCode("agent tail", err, stderr)
	}
	stopStatus := func() {}
	if status != nil {
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); statusLine(sctx, a, status) }()
		stopStatus = sync.OnceFunc(func() { cancel(); <-done })
		defer stopStatus()
	}
	err = a.Run(ctx)
	stopStatus() // cleared before the summary
	r := tailResult{
		err: err, interrupted: ctx.Err() != nil, readerGone: errors.Is(context.Cause(ctx), errReaderGone),
		once: once, tmp: tmp, stateDir: cfg.StateDir, snap: a.Snapshot(), behind: a.FilesBehind(), unread: !a.FilesReadToEnd(), took: time.Since(start),
		hadCheckpoints: hadCheckpoints, files: in.files, to: redact.RawURL(o.to),
	}
	return r.report(stderr, once && !o.quiet && isTerminal(stderr))
}

// tailSourceRecordKey is the configuration path of --max-record-bytes in
// the Config tail makes, as validation names it.
var tailSourceRecordKey = regexp.MustCompile(`(?m)^sources\[\d+\]\.(file|-|stdin)\.max_record_bytes:`)

// tailValidationText is a validation error of the Config tail made, said
// in the command line's words: the flag, not the configuration key it set
// (sources[0].file.max_record_bytes), and --to, not the output's name.
func tailValidationText(err error) string {
	msg := tailSourceRecordKey.ReplaceAllString(err.Error(), "--max-record-bytes")
	return strings.ReplaceAll(msg, "output "+strconv.Quote(tailOutputName), "the destination (--to)")
}

// tailResult is what a run of agent tail ended with.
type tailResult struct {
	err            error
	interrupted    bool // a signal (or the reader of stdout leaving) stopped it
	readerGone     bool
	once           bool
	tmp            bool // the state directory is temporary (stdout)
	stateDir       string
	snap           agent.Snapshot
	behind         int64 // bytes of the files left to read
	unread         bool  // the file sources stopped before reading their files to their end (behind may not know how much)
	took           time.Duration
	hadCheckpoints bool
	files          []string
	to             string // --to, redacted
}

// undelivered is how many records read by this run were neither delivered
// nor dead-lettered (nor dropped).
func (r tailResult) undelivered() int64 {
	s := r.snap
	return max(s.RecordsRead-s.RecordsSent-s.DeadLettered-s.Dropped, 0)
}

// report prints what the user must know about the run and returns the exit
// status.
func (r tailResult) report(stderr io.Writer, summary bool) int {
	if r.err != nil && !errors.Is(r.err, context.Canceled) && !errors.Is(r.err, agent.ErrDeadLettered) {
		var oe *agent.OutputError
		if errors.As(r.err, &oe) && oe.Name == tailOutputName {
			// The user named no output: --to is the one to tell.
			fmt.Fprintf(stderr, "agent tail: --to %q: %v\n", r.to, redact.Error(oe.Err))
			return exitFailed
		}
		return exitCode("agent tail", r.err, stderr)
	}
	if r.readerGone {
		// `agent tail app.log | head`: the reader had what it wanted.
		if n := r.undelivered(); n > 0 && !r.tmp {
			fmt.Fprintf(stderr, "agent tail: stdout was closed; %d records were not printed and stay in %s for the next run\n", n, r.stateDir)
		}
		return exitOK
	}
	code := exitOK
	// Not when the run delivered (or still holds) an earlier run's backlog:
	// there was something to ship.
	// Only for a run that ended by itself: one interrupted before it read
	// anything (waiting for a Kinesis shard map) has not looked.
	if !r.interrupted && r.snap.RecordsRead == 0 && r.snap.RecordsSent == 0 && r.snap.BacklogEntries == 0 && r.hadCheckpoints && anyNonEmpty(r.files) {
		fmt.Fprintf(stderr, "agent tail: nothing new to ship: the positions saved in %s are at the end of the files (--reset reads them again)\n", r.stateDir)
	}
	if r.once && !r.tmp && r.snap.PartialLines > 0 {
		// Shipped, and the saved position is after it: a later run
		// neither sends it again nor waits for its newline.
		fmt.Fprintf(stderr, "agent tail: %d last %s without a newline shipped as %s; text appended to %s later is shipped as a record of its own\n",
			r.snap.PartialLines, plural(r.snap.PartialLines, "line", "lines"), plural(r.snap.PartialLines, "it is", "they are"), plural(r.snap.PartialLines, "it", "them"))
	}
	if n := r.snap.TruncatedRecords; n > 0 {
		// The record is not the line: say so, with what to do.
		fmt.Fprintf(stderr, "agent tail: %d %s longer than the longest record taken %s truncated (the rest of %s skipped); --max-record-bytes sets the limit, up to what the destination takes\n",
			n, plural(n, "line", "lines"), plural(n, "was", "were"), plural(n, "it", "each"))
	}
	if summary {
		dl := r.snap.DeadLettered + r.snap.Dropped
		fmt.Fprintf(stderr, "agent tail: %d records (%s) in %s, %d dead-lettered\n",
			r.snap.RecordsRead, humanBytes(float64(r.snap.BytesRead)), r.took.Round(time.Millisecond), dl)
	}
	if r.once && r.interrupted {
		if n := r.undelivered(); n > 0 {
			where := "they stay in " + r.stateDir + " and go out with the next run of the same command"
			if r.tmp {
				where = "they were not printed"
			}
			fmt.Fprintf(stderr, "agent tail: interrupted: %d records were not delivered (%s)\n", n, where)
			code = exitFailed
		} else if b := r.snap.BacklogEntries; b > 0 && !r.tmp {
			// An earlier run's records, still in the spool.
			fmt.Fprintf(stderr, "agent tail: interrupted: %d spool entries were not delivered (they stay in %s and go out with the next run of the same command)\n", b, r.stateDir)
			code = exitFailed
		} else if r.snap.RecordsRead == 0 && r.snap.RecordsSent == 0 && anyNonEmpty(r.files) {
			// Stopped before the files were read (the destination was not
			// ready: a Kinesis shard map that did not come): not "done".
			where := "the next run of the same command reads them from where it stopped"
			if r.tmp {
				where = "nothing was printed"
			}
			fmt.Fprintf(stderr, "agent tail: interrupted before the files were read (%s)\n", where)
			code = exitFailed
		} else if r.behind > 0 || r.unread {
			// What was read was delivered, but the files were not read
			// to their end: `agent tail --once app.log && rm app.log`
			// must not go on. (How much is left is not known while a
			// compressed rotation is read: its size is not.)
			where := "the next run of the same command reads them from where it stopped"
			if r.tmp {
				where = "it was not printed"
			}
			left := ""
			if r.behind > 0 {
				left = ": " + humanBytes(float64(r.behind)) + " left"
			}
			fmt.Fprintf(stderr, "agent tail: interrupted before the files were read to their end%s (%s)\n", left, where)
			code = exitFailed
		}
	}
	if errors.Is(r.err, agent.ErrDeadLettered) {
		exitCode("agent tail", r.err, stderr)
		code = exitFailed
	}
	return code
}

// tailInputs are the command line's paths by kind.
type tailInputs struct {
	files   []string // file paths and glob patterns, absolute
	stdin   bool     // "-"
	fifos   []string // named pipes, absolute
	sockets []string // URLs of a source type's scheme (unix://, tcp://, ...)
}

func (in tailInputs) hasStreams() bool { return in.stdin || len(in.fifos) > 0 }

// onlyStreams: every input ends (standard input, named pipes), so the run
// ends with them. Files are followed and sockets listen until interrupted.
func (in tailInputs) onlyStreams() bool { return len(in.files) == 0 && len(in.sockets) == 0 }

// classifyInputs sorts the paths: "-" is standard input, SCHEME://... is a
// socket (or another source type's URL; file:// is a path), an existing
// named pipe is read as a stream, anything else is a file or a glob.
func classifyInputs(paths []string) (tailInputs, error) {
	var in tailInputs
	seen := map[string]bool{}
	for _, p := range paths {
		if scheme, _, ok := strings.Cut(p, "://"); ok && scheme != "" && !strings.ContainsAny(scheme, "/*?[") {
			if scheme == "file" {
				p = strings.TrimPrefix(p, "file://")
			} else {
				if _, ok := components().SourceForScheme(scheme); !ok {
					return in, fmt.Errorf("%s: unknown scheme %q (this build takes paths, - and %s)", p, scheme, strings.Join(sourceSchemes(), ", "))
				}
				if seen[p] {
					return in, fmt.Errorf("%s given twice", p)
				}
				seen[p] = true
				in.sockets = append(in.sockets, p)
				continue
			}
		}
		if p == "-" {
			if in.stdin {
				return in, errors.New("- (standard input) given twice")
			}
			in.stdin = true
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return in, err
		}
		if seen[abs] {
			continue
		}
		seen[abs] = true
		if !hasGlobMeta(p) {
			if fi, err := os.Stat(abs); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
				in.fifos = append(in.fifos, abs)
				continue
			}
		}
		in.files = append(in.files, abs)
	}
	return in, nil
}

// fileFlagNames are the tail flags only the file source takes: where the
// reading of a file without a checkpoint starts, multi-line records, its
// saved positions, and where its rotations are looked for. Standard input, named pipes and sockets have none
// of these.
var fileFlagNames = []string{"from-beginning", "from-end", "multiline-start", "reset", "rotated-dir"}

// checkInputFlags refuses the file flags given on the command line (set)
// when no input is a file: silently ignored, they would surprise
// (--from-end with a socket, --multiline-start with standard input).
func checkInputFlags(in tailInputs, set map[string]bool) error {
	if len(in.files) > 0 {
		return nil
	}
	var kinds []string
	if in.stdin {
		kinds = append(kinds, "standard input")
	}
	if len(in.fifos) > 0 {
		kinds = append(kinds, "named pipes")
	}
	if len(in.sockets) > 0 {
		kinds = append(kinds, "sockets")
	}
	var errs []string
	for _, name := range fileFlagNames {
		if set[name] {
			errs = append(errs, fmt.Sprintf("--%s applies to files; the inputs here are %s", name, strings.Join(kinds, " and ")))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// checkSpoolBypassFlag refuses an explicit --spool-bypass (true) where
// aggregates always go through the spool: a flow with an input that cannot
// be read again (standard input, a named pipe, a socket: only files can),
// and the ordered sends of stdout, file:// and --concurrency 1 (see
// tailConfig). --spool-bypass=false asks for what happens there anyway.
func checkSpoolBypassFlag(in tailInputs, outType string, o *tailOptions) error {
	if !o.set["spool-bypass"] || !o.spoolBypass {
		return nil
	}
	switch {
	case in.hasStreams() || len(in.sockets) > 0:
		return errors.New("--spool-bypass applies when every input is a file (with standard input, named pipes or sockets among them every aggregate goes through the spool)")
	case outType == "stdout" || outType == "file":
		return fmt.Errorf("--spool-bypass does not apply to a %s destination (its records go through the spool, in order)", outType)
	case o.concurrency == 1:
		return errors.New("--spool-bypass does not apply with --concurrency 1 (its records go through the spool, in order)")
	}
	return nil
}

// sourceSchemes are the URL schemes `agent tail` takes as inputs.
func sourceSchemes() []string {
	var out []string
	for _, t := range components().Sources {
		if t.FromArgs == nil {
			continue
		}
		for _, sc := range t.Schemes {
			if sc != "file" && sc != "-" {
				out = append(out, sc+"://")
			}
		}
	}
	return out
}

// checkRotatedDirs applies the rule of the file source's rotated_dirs
// (file.Config.RotatedDirProblems, which agent validate and run apply) to
// --rotated-dir: a path that exists and is not a directory is refused (it
// reports whether there was one), one that does not exist (yet) is warned
// about (the rotations there are found once it is made).
func checkRotatedDirs(cfg agent.Config, stderr io.Writer) bool {
	bad := false
	for _, s := range cfg.Sources {
		fc, ok := s.Config.(*file.Config)
		if !ok {
			continue
		}
		for _, p := range fc.RotatedDirProblems() {
			kind := "warning: "
			if !p.Missing {
				kind, bad = "", true
			}
			fmt.Fprintf(stderr, "agent tail: --rotated-dir %s: %s%s\n", p.Dir, kind, p.Describe())
		}
	}
	return bad
}

func hasGlobMeta(p string) bool { return strings.ContainsAny(p, "*?[") }

// unreadable names every literal path that exists but cannot be read (no
// permission, a directory, a loop of links). It reports whether there was
// one.
func unreadable(files []string, stderr io.Writer) bool {
	bad := false
	for _, p := range files {
		if hasGlobMeta(p) {
			continue
		}
		if err := checkReadable(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "agent tail: %s: cannot be read: %s\n", p, errorText(err))
			bad = true
		}
	}
	return bad
}

// checkReadable opens p for reading (and closes it), without waiting on
// anything that is not a regular file.
func checkReadable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory (quote a glob to follow its files: '" + filepath.Join(p, "*.log") + "')")
	}
	if !fi.Mode().IsRegular() {
		return unix.Access(p, unix.R_OK)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// errorText is err without the path os errors repeat.
func errorText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// anyNonEmpty reports whether a file the patterns match has data.
func anyNonEmpty(patterns []string) bool {
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		for _, f := range m {
			if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
				return true
			}
		}
	}
	return false
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

// tailOutputName names the output of --to in the Config tail makes.
const tailOutputName = "destination"

// tailConfig turns the command line into the same Config a daemon reads. tmp
// reports a temporary state directory, removed after the run.
func tailConfig(in tailInputs, o *tailOptions) (cfg agent.Config, tmp bool, err error) {
	cfg = agent.DefaultConfig()
	cfg.Log.Level = o.logLevel
	cfg.Admin.Listen = o.admin
	cfg.ShutdownTimeout = 5 * time.Second

	out, err := destination(o)
	if err != nil {
		return cfg, false, err
	}
	ids := append([]string(nil), in.files...)
	ids = append(ids, in.fifos...)
	ids = append(ids, in.sockets...)
	if in.stdin {
		ids = append(ids, "-")
	}
	switch {
	case o.stateDir != "":
		cfg.StateDir = o.stateDir
	case o.to == "" || o.to == "-":
		// Nothing to resume for a terminal: each run starts afresh.
		dir, err := os.MkdirTemp("", "agent-tail-")
		if err != nil {
			return cfg, false, err
		}
		cfg.StateDir = dir
		tmp = true
	default:
		dir, err := defaultTailStateDir(ids, o.to)
		if err != nil {
			return cfg, false, err
		}
		cfg.StateDir = dir
	}
	fail := func(err error) (agent.Config, bool, error) {
		if tmp {
			os.RemoveAll(cfg.StateDir)
		}
		return cfg, false, err
	}
	cfg.Spool.Dir = filepath.Join(cfg.StateDir, "spool")
	cfg.Spool.Sync = spool.SyncPolicy(o.sync)
	if o.spoolMax != "" {
		v, err := units.ParseByteSize(o.spoolMax)
		if err != nil {
			return fail(fmt.Errorf("--spool-max-bytes: %w", err))
		}
		if v < tailMinSpoolBytes {
			return fail(fmt.Errorf("--spool-max-bytes: must be at least %s (room for records of %s with their keys and the spool's framing), got %s",
				units.ByteSize(tailMinSpoolBytes), units.ByteSize(tailMinSpoolBytes-spoolEntryMargin-recordHeadroom), v))
		}
		cfg.Spool.MaxBytes = v
		if v < 2*cfg.Spool.SegmentBytes {
			// A small cap takes smaller spool files (tail has no flag for
			// segment_bytes), as a config file's spool.max_bytes does.
			if seg, ok := agent.SpoolSegmentFor(v); ok {
				cfg.Spool.SegmentBytes = seg
			}
		}
		if fit := v - spoolEntryMargin; fit < cfg.Spool.MaxEntryBytes {
			// A small cap takes smaller entries too (tail has no flag
			// for max_entry_bytes): the default (16MiB) does not fit,
			// and the spool would warn about a setting the user never
			// made (it takes spool.MaxEntryFor(v), more than fit). The
			// records and aggregates are bounded to fit below.
			cfg.Spool.MaxEntryBytes = fit
		}
	}
	if o.reset {
		if err := os.Remove(filepath.Join(cfg.StateDir, "checkpoints.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
	}
	var maxRecord units.ByteSize
	if o.maxRecord != "" {
		maxRecord, err = units.ParseByteSize(o.maxRecord)
		if err != nil {
			return fail(fmt.Errorf("--max-record-bytes: %w", err))
		}
	}
	if rl, ok := out.Config.(outputs.RecordLimiter); ok && maxRecord == 0 {
		// A destination taking smaller records than the sources' default
		// (Firehose: 1000 KiB) lowers it: longer lines are truncated, as
		// with --max-record-bytes, rather than refused by validation. 4 KiB
		// stay for the partition key and the KPL framing.
		if fit := units.ByteSize(rl.MaxRecordBytes()) - 4<<10; fit < file.DefaultMaxRecordBytes {
			maxRecord = fit
		}
	}
	if fit := cfg.Spool.MaxEntryBytes - recordHeadroom; o.maxRecord == "" && fit < file.DefaultMaxRecordBytes && (maxRecord == 0 || fit < maxRecord) {
		// A spool entry smaller than the sources' default record (a
		// small --spool-max-bytes) lowers it likewise, with the same 4 KiB
		// for the key and framing. An explicit --max-record-bytes that
		// does not fit is validation's to report.
		maxRecord = fit
	}

	var names []string
	comps := components()
	if len(in.files) > 0 {
		src, err := tailSource("tail", "file", in.files, o, maxRecord, comps)
		if err != nil {
			return fail(err)
		}
		cfg.Sources = append(cfg.Sources, src)
		names = append(names, src.Name)
	}
	streams := in.fifos
	if in.stdin {
		streams = append([]string{"-"}, streams...)
	}
	for _, p := range streams {
		name := "stdin"
		if p != "-" {
			name = "fifo:" + p
		}
		src, err := tailSource(name, "-", []string{p}, o, maxRecord, comps)
		if err != nil {
			return fail(err)
		}
		cfg.Sources = append(cfg.Sources, src)
		names = append(names, name)
	}
	for _, u := range in.sockets {
		scheme, _, _ := strings.Cut(u, "://")
		src, err := tailSource(u, scheme, []string{u}, o, maxRecord, comps)
		if err != nil {
			return fail(err)
		}
		cfg.Sources = append(cfg.Sources, src)
		names = append(names, u)
	}
	out.Name = tailOutputName
	cfg.Outputs = []agent.OutputConfig{out}
	flow := agent.DefaultFlowConfig()
	flow.Name = "tail"
	flow.Sources = names
	flow.Output = out.Name
	flow.PartitionKey = process.ParseKeyFlag(o.partitionKey)
	if most := (cfg.Spool.MaxEntryBytes - 1<<10) / 1024 * 1024; flow.Aggregation.MaxBytes > most {
		// A small --spool-max-bytes takes smaller aggregates (tail has no
		// flag for aggregation.max_bytes): an aggregate must fit a spool
		// entry with its key (less than 1KiB).
		flow.Aggregation.MaxBytes = most
	}
	if o.singleLine {
		flow.Processors = append(flow.Processors, process.Processor{SingleLine: &process.SingleLineConfig{}})
	}
	if o.logFormat != "" {
		flow.Processors = append(flow.Processors, process.Processor{LogToJSON: &process.LogConfig{Format: o.logFormat}})
	}
	if o.addHost != "" {
		flow.Processors = append(flow.Processors, process.Processor{AddFields: &process.AddFieldsConfig{Hostname: o.addHost}})
	}
	if o.envelope != "" {
		env, err := process.ParseEnvelopeList(o.envelope)
		if err != nil {
			return fail(fmt.Errorf("--envelope: %w", err))
		}
		flow.Envelope = env
	}
	if o.concurrency > 0 {
		flow.Sender.Concurrency = o.concurrency
	} else if ca, ok := out.Config.(outputs.ConcurrencyAdvisor); ok {
		flow.Sender.Concurrency = ca.DefaultConcurrency()
	}
	if !o.spoolBypass {
		flow.SpoolBypass = false
	}
	if o.maxRetry > 0 {
		flow.Sender.MaxRetryDuration = o.maxRetry
	}
	if out.Type == "stdout" || out.Type == "file" || o.concurrency == 1 {
		// A terminal, a pipe or a file shows records in the order they
		// were written: one request at a time, in spool order (the direct
		// path would let a spilled aggregate overtake), each retried until
		// it is done, keeps each input's order byte for byte. An explicit
		// --concurrency 1 asks the same of any destination.
		flow.SpoolBypass = false
		if o.concurrency == 0 {
			flow.Sender.Concurrency = 1
		}
	}
	cfg.Flows = []agent.FlowConfig{flow}
	return cfg, tmp, nil
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

// spoolEntryMargin is what tail leaves under --spool-max-bytes for the
// spool's own framing around its largest entry (a segment header, the
// entry's frame header and a seal frame: under 100 bytes).
const spoolEntryMargin = 4 << 10

// recordHeadroom is what a record leaves in a spool entry for its partition
// key and the KPL framing (agent's recordHeadroom; see maxRecord in
// tailConfig).
const recordHeadroom = 4 << 10

// tailMinSpoolBytes is the smallest --spool-max-bytes: its largest entry
// (the cap less spoolEntryMargin) holds records of 8KiB with their
// recordHeadroom. Smaller spools would only hold toy records.
const tailMinSpoolBytes = 16 << 10

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// statusLine redraws the status line every second, and clears it when ctx
// is done.
func statusLine(ctx context.Context, a *agent.Agent, w *termStatus) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := a.Snapshot()
	prevT := time.Now()
	for {
		select {
		case <-ctx.Done():
			w.clear()
			return
		case now := <-t.C:
			s := a.Snapshot()
			w.draw(statusText(prev, s, now.Sub(prevT)))
			prev, prevT = s, now
		}
	}
}

// termStatus is the terminal's stderr while agent tail draws its status
// line on its last line. Everything else written to stderr while it is
// shown (log lines, the Ctrl-C hint) goes through Write, which clears the
// status line first and draws it again after the text, so that a log line
// is not drawn over the status line's remains. Safe for concurrent use.
type termStatus struct {
	w io.Writer
	// visible reports whether the status line may be drawn now (nil:
	// always): not while agent tail is a background job, whose writes to
	// the terminal stop it under `stty tostop` (SIGTTOU) and otherwise
	// land over the shell's prompt. A line drawn before the job went to
	// the background is left as it is (erasing it is a write too).
	visible func() bool

	mu   sync.Mutex
	line string // the status line shown; "" before the first draw and after clear
	// midLine: the last Write did not end its line; the status line waits
	// for the end of it.
	midLine bool
}

// eraseLine moves to the start of the line and erases it.
const eraseLine = "\r\033[K"

// Write writes p above the status line. A p that does not end its line
// (no final newline) is continued by the next Write; the status line is
// drawn again once the line ends.
func (t *termStatus) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" && !t.isVisible() {
		t.line = ""
	}
	buf := make([]byte, 0, len(eraseLine)+len(p)+len(t.line))
	if t.line != "" && !t.midLine {
		buf = append(buf, eraseLine...)
	}
	buf = append(buf, p...)
	t.midLine = p[len(p)-1] != '\n'
	if t.line != "" && !t.midLine {
		buf = append(buf, t.line...)
	}
	if _, err := t.w.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// draw shows line as the status line, in place of the one shown.
func (t *termStatus) draw(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.isVisible() {
		t.line = ""
		return
	}
	t.line = line
	if !t.midLine {
		_, _ = io.WriteString(t.w, eraseLine+line)
	}
}

func (t *termStatus) isVisible() bool { return t.visible == nil || t.visible() }

// clear erases the status line; what is written after goes to the
// terminal as it is.
func (t *termStatus) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" && !t.midLine {
		_, _ = io.WriteString(t.w, eraseLine)
	}
	t.line = ""
}

// statusText is the status line for the counters s, dt after prev. A
// stalled destination (a send waiting long for its answer: the counters
// alone look like an idle file) is named with since when it waits.
func statusText(prev, s agent.Snapshot, dt time.Duration) string {
	sec := dt.Seconds()
	line := fmt.Sprintf("%s rec/s  %s/s  sent %s  backlog %d (%s)  retries %d  dead-lettered %d",
		human(float64(s.RecordsRead-prev.RecordsRead)/sec), humanBytes(float64(s.BytesRead-prev.BytesRead)/sec),
		human(float64(s.RecordsSent)), s.BacklogEntries, humanBytes(float64(s.BacklogBytes)), s.Retries, s.DeadLettered)
	for _, st := range s.Stalled {
		line += fmt.Sprintf("  STALLED: no answer for %s (since %s)", st.Waiting.Round(time.Second), st.Since.Local().Format("15:04:05"))
	}
	return line
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
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
