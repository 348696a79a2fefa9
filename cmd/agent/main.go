// Command agent is the producer daemon (`agent run`) and its ad hoc
// companion (`agent tail`): it tails files, packs records into KPL
// aggregates, spools them to disk and ships them without losing any.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/internal/earlysignal"
	"github.com/kplagent/agent/internal/editdist"
)

// Stamped by the Makefile (-X main.version=… -X main.commit=… -X main.date=…).
var (
	version = "dev"
	commit  = ""
	date    = ""
)

const usage = `agent: ships log records to Kinesis, Kafka or HTTP without losing any.

Usage:
  agent run [-c FILE]           run the daemon (default config /etc/agent/agent.yaml)
  agent tail PATH... [flags]    ship files ad hoc (agent tail -h for flags)
  agent validate [-c FILE]      check a config file; exit 2 listing every problem
  agent dead-letter [flags]     print the dead-letter file (records that could not be delivered)
  agent dead-letter replay [-c FILE]  send the dead-lettered records again (once the cause is fixed)
  agent kpl decode [FILE...]    decode KPL aggregated records (base64 lines on stdin, or raw files)
  agent kpl encode              aggregate lines from stdin into KPL records (base64 lines out)
  agent status [--json]         show the running agent's sources, outputs and backlog (its admin endpoint)
  agent top [-n N]              the same, refreshed live (q or Ctrl-C to quit; plain snapshots when not a terminal)
  agent tap FLOW [--rate N]     print a sample of the records entering a flow (Ctrl-C to stop)
  agent reload [-c FILE]        make the running agent re-read its config (as SIGHUP; exit 1 if refused
                                or if it does not answer within --timeout, default shutdown_timeout + 30s)
  agent version                 print the version and the compiled-in source and output types
`

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // runtime failure, or records dead-lettered in --once mode
	exitUsage  = 2 // bad flags or bad config
)

func main() {
	if ch := earlysignal.Caught(); ch != nil {
		// First: a signal that came while the program started or comes
		// while the configuration is read stops the agent as one that comes
		// later does, not kill it. The logger serves a forced exit before
		// the configuration is known.
		earlySignals = catchSignalsOn(ch, signalOptions{log: newLogger(os.Stderr, "info", "auto"), stderr: os.Stderr})
	}
	stop := startProfile()
	code := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "tail":
		return cmdTail(args[1:], stdin, stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "dead-letter":
		return cmdDeadLetter(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "reload":
		return cmdReload(args[1:], stdout, stderr)
	case "tap":
		return cmdTap(args[1:], stdout, stderr)
	case "top":
		return cmdTop(args[1:], stdin, stdout, stderr)
	case "kpl":
		return runKPL(args[1:], stdin, stdout, stderr)
	case "version", "--version", "-v":
		fs := flag.NewFlagSet("agent version", flag.ContinueOnError)
		if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
			return code
		}
		if extraArgs(fs, stderr, "agent version takes none") {
			return exitUsage
		}
		printVersion(stdout)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "agent: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// parseArgs runs parse (fs.Parse, or a variant) with the flag set's
// messages held back: -h/--help prints the usage on stdout and exits 0 (it
// is what was asked for: `agent run --help | less` works), a bad flag prints
// the error and the usage on stderr and exits 2. ok is true when the
// command goes on. A custom fs.Usage must write to fs.Output().
func parseArgs(fs *flag.FlagSet, stdout, stderr io.Writer, parse func() error) (code int, ok bool) {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := parse()
	fs.SetOutput(stderr)
	switch {
	case err == nil:
		return exitOK, true
	case errors.Is(err, flag.ErrHelp):
		_, _ = stdout.Write(buf.Bytes())
		return exitOK, false
	default:
		if name, found := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); found {
			// Not the whole usage (agent tail's is 80 lines: the error
			// scrolled away): the error, the flag probably meant, and
			// where the others are.
			msg := fmt.Sprintf("%s: %v", fs.Name(), err)
			if best := closestFlag(fs, name); best != "" {
				msg += fmt.Sprintf(" (did you mean --%s?)", best)
			}
			fmt.Fprintf(stderr, "%s; `%s -h` lists every flag\n", msg, fs.Name())
			return exitUsage, false
		}
		_, _ = stderr.Write(buf.Bytes())
		return exitUsage, false
	}
}

// closestFlag is the flag of fs whose name is closest to name (at most 2
// edits, 1 for a name of 3 letters or less, or name a prefix of it:
// --onc, --state, --form-end), or "".
func closestFlag(fs *flag.FlagSet, name string) string {
	name = strings.TrimLeft(name, "-")
	if i := strings.IndexByte(name, '='); i >= 0 {
		name = name[:i]
	}
	// Short names are close to many flags: a letter or two off is
	// another word.
	limit := 2
	switch {
	case len(name) <= 1:
		return ""
	case len(name) <= 3:
		limit = 1
	}
	best, bestD := "", limit+1
	fs.VisitAll(func(f *flag.Flag) {
		d := editdist.Levenshtein(name, f.Name)
		if len(name) >= 3 && strings.HasPrefix(f.Name, name) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

// parseFlags is parseArgs with fs.Parse(args).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	return parseArgs(fs, stdout, stderr, func() error { return fs.Parse(args) })
}

// extraArgs reports arguments left after the flags of a command that takes
// none (on stderr, naming the first): `agent run other.yaml` must not run
// the default configuration, nor `agent dead-letter list -c FILE` read the
// default file because the flag parser stopped at "list". hint, when set,
// says what was probably meant.
func extraArgs(fs *flag.FlagSet, stderr io.Writer, hint string) bool {
	if fs.NArg() == 0 {
		return false
	}
	msg := fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	if fs.NArg() > 1 {
		msg += fmt.Sprintf(" (and %d more)", fs.NArg()-1)
	}
	if hint != "" {
		msg += "; " + hint
	}
	fmt.Fprintln(stderr, msg)
	return true
}

// exitCode prints err on stderr after the command's name (cmd: "agent run",
// "agent tail") and returns the exit status it calls for.
func exitCode(cmd string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, context.Canceled) {
		return exitOK
	}
	fmt.Fprintln(stderr, cmd+":", strings.TrimPrefix(err.Error(), "agent: "))
	var ce *agent.ConfigError
	if errors.As(err, &ce) {
		return exitUsage
	}
	return exitFailed
}

// printConfigError prints an error of agent.LoadConfig for the command cmd
// ("agent run"). The problems of a *agent.ConfigError are printed as they
// are: each line starts with FILE:LINE, as a compiler's, which editors
// follow. Any other error (the file cannot be read) gets the command's name
// before it, as the commands' other errors have.
func printConfigError(stderr io.Writer, cmd string, err error) {
	var ce *agent.ConfigError
	if errors.As(err, &ce) {
		fmt.Fprintln(stderr, err)
		return
	}
	fmt.Fprintln(stderr, cmd+":", strings.TrimPrefix(err.Error(), "agent: "))
}
