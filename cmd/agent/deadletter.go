package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kplagent/agent/agent"
)

// cmdDeadLetter prints the dead-letter files (a replay's remainder, the
// rotated files, the active file): one block per record with when, where
// and why, then the record (as text when it is UTF-8, else base64). --json
// prints the lines unchanged (for jq). `agent dead-letter replay` sends the
// records again.
func cmdDeadLetter(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "replay" {
		return cmdDeadLetterReplay(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("agent dead-letter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage:\n  agent dead-letter [-c FILE | --state-dir DIR | --file PATH] [--json]\n  agent dead-letter replay [-c FILE] [--state-dir DIR] [--flow NAME] [--output NAME] [--retry-for 1m]\n  agent dead-letter replay --tail PATH... --to URL [agent tail flags]\n\n")
		fs.PrintDefaults()
	}
	cfgPath := fs.String("c", "", "config file whose state_dir holds the dead-letter files (default /etc/agent/agent.yaml)")
	stateDir := fs.String("state-dir", "", "state directory holding "+agent.DeadLetterFile)
	path := fs.String("file", "", "one dead-letter file itself")
	asJSON := fs.Bool("json", false, "print the JSON lines as they are")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if extraArgs(fs, stderr, "the commands are agent dead-letter [flags] and agent dead-letter replay [flags]") {
		return exitUsage
	}
	var parts []agent.DeadLetterPart
	if *path != "" {
		if _, err := os.Stat(*path); err != nil {
			fmt.Fprintln(stderr, "agent dead-letter:", err)
			return exitFailed
		}
		parts = []agent.DeadLetterPart{{Path: *path}}
	} else {
		dir := *stateDir
		if dir == "" {
			c := *cfgPath
			if c == "" {
				c = defaultConfigPath
			}
			cfg, err := agent.LoadConfig(c, components())
			if err != nil {
				printConfigError(stderr, "agent dead-letter", err)
				if *cfgPath == "" && errors.Is(err, os.ErrNotExist) {
					fmt.Fprintln(stderr, "agent dead-letter: name the agent's config with -c FILE, or its state directory with --state-dir DIR")
				}
				return exitUsage
			}
			dir = cfg.StateDir
		}
		if err := agent.CheckStateDir(dir); err != nil {
			fmt.Fprintln(stderr, "agent dead-letter:", strings.TrimPrefix(err.Error(), "agent: "))
			return exitFailed
		}
		var err error
		if parts, err = agent.DeadLetterFiles(dir); err != nil {
			fmt.Fprintln(stderr, "agent dead-letter:", err)
			return exitFailed
		}
		if len(parts) == 0 {
			fmt.Fprintf(stderr, "agent dead-letter: no %s in %s: %s\n", agent.DeadLetterFile, dir, noRecordsLeft(dir, "nothing was dead-lettered"))
			return exitOK
		}
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	bad, records := 0, 0
	for _, p := range parts {
		n, b, err := printDeadLetters(w, stderr, p, *asJSON)
		records += n
		bad += b
		if err != nil {
			fmt.Fprintln(stderr, "agent dead-letter:", err)
			return exitFailed
		}
	}
	if records == 0 && bad == 0 {
		// Files that exist and hold nothing (emptied by hand, or
		// replayed while this ran) are not "nothing was dead-lettered".
		what := "the dead-letter file is empty"
		if *path != "" {
			what = *path + " is empty"
		} else if len(parts) > 1 {
			what = "the dead-letter files are empty"
		}
		if *path == "" {
			what = noRecordsLeft(filepath.Dir(parts[0].Path), what)
		}
		fmt.Fprintln(stderr, "agent dead-letter:", what)
	}
	if bad > 0 {
		// Evidence not shown: a script must not read the listing as whole.
		w.Flush()
		what := fmt.Sprintf("%d lines are not dead-letter records", bad)
		if bad == 1 {
			what = "1 line is not a dead-letter record"
		}
		fmt.Fprintf(stderr, "agent dead-letter: %s (named above; --json prints them as they are); replay keeps them in the dead-letter file\n", what)
		return exitFailed
	}
	return exitOK
}

// noRecordsLeft says why stateDir holds no dead-lettered record, when a
// replay tells (agent.LastReplay), else otherwise.
func noRecordsLeft(stateDir, otherwise string) string {
	ran, at, n := agent.LastReplay(stateDir)
	switch {
	case !ran:
		return otherwise
	case n > 0:
		what := "records"
		if n == 1 {
			what = "record"
		}
		return fmt.Sprintf("no record is dead-lettered now: everything was replayed (the last agent dead-letter replay to deliver any finished at %s and delivered %d %s)",
			at.Local().Format(time.RFC3339), n, what)
	default:
		return "no record is dead-lettered now: everything was replayed (agent dead-letter replay ran here)"
	}
}

// printDeadLetters prints the records of p; it returns how many lines were
// records, and how many were not (named on stderr).
func printDeadLetters(w *bufio.Writer, stderr io.Writer, p agent.DeadLetterPart, asJSON bool) (records, bad int, _ error) {
	f, err := os.Open(p.Path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil // replayed or rotated meanwhile
	}
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(p.Offset, io.SeekStart); err != nil {
		return 0, 0, err
	}
	where := ""
	if p.Offset > 0 {
		where = fmt.Sprintf(" (counting from byte %d, where the replay in progress got to)", p.Offset)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		if asJSON {
			w.Write(sc.Bytes())
			w.WriteByte('\n')
			continue
		}
		var r agent.DeadLetterRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			bad++
			w.Flush() // in order with stdout on a terminal
			fmt.Fprintf(stderr, "agent dead-letter: %s: line %d%s is not a dead-letter record: %v\n", p.Path, n, where, err)
			continue
		}
		fmt.Fprintf(w, "%s flow=%s output=%s pk=%q\n  reason: %s\n", r.Time.Format("2006-01-02T15:04:05Z07:00"), r.Flow, r.Output, r.PartitionKey, r.Reason)
		if r.Text != nil {
			fmt.Fprintf(w, "  text: %q\n", *r.Text)
		} else {
			fmt.Fprintf(w, "  base64: %s\n", base64.StdEncoding.EncodeToString(r.Data))
		}
	}
	return n - bad, bad, sc.Err()
}

// cmdDeadLetterReplay sends dead-lettered records again through their
// flow's output as the config defines it. Exit 0 when every record was
// delivered, 1 when some stay in the dead-letter files (rejected again, not
// replayed, or the destination still failing), 2 for a bad config.
func cmdDeadLetterReplay(args []string, stdout, stderr io.Writer) int {
	// --tail anywhere (before --) is the tail form: the tail flags it takes
	// may come first (--state-dir DIR --tail app.log --to URL).
	for i, a := range args {
		if a == "--" {
			break
		}
		if a == "--tail" || a == "-tail" {
			rest := append(args[:i:i], args[i+1:]...)
			return cmdDeadLetterReplayTail(rest, stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("agent dead-letter replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage:\n  agent dead-letter replay [-c FILE] [--state-dir DIR] [--flow NAME] [--output NAME] [--retry-for 1m]\n  agent dead-letter replay --tail PATH... --to URL [agent tail flags]\n\n")
		fs.PrintDefaults()
	}
	cfgPath := fs.String("c", defaultConfigPath, "config file: its flows' outputs receive the records")
	stateDir := fs.String("state-dir", "", "state directory holding the dead-letter files (default: the config's state_dir)")
	flow := fs.String("flow", "", "replay only this flow's records")
	output := fs.String("output", "", "send every record through this output of the config instead of its flow's")
	retryFor := fs.Duration("retry-for", time.Minute, "how long to retry a failing destination before stopping (the rest stays)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if extraArgs(fs, stderr, "the configuration file is given with -c FILE; files to replay are given with --tail PATH... --to URL") {
		return exitUsage
	}
	cfg, err := agent.LoadConfig(*cfgPath, components())
	if err != nil {
		printConfigError(stderr, "agent dead-letter replay", err)
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintln(stderr, "agent dead-letter replay: the records go through the outputs of the agent's config: name it with -c FILE (for what agent tail dead-lettered: --tail PATH... --to URL)")
		}
		return exitUsage
	}
	if *stateDir != "" {
		if cfg.StateDir, err = filepath.Abs(*stateDir); err != nil {
			fmt.Fprintln(stderr, "agent dead-letter replay:", err)
			return exitUsage
		}
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	return replay(cfg, log, agent.ReplayOptions{Flow: *flow, Output: *output, RetryFor: *retryFor}, "agent dead-letter replay "+strings.Join(args, " "), stdout, stderr)
}

// cmdDeadLetterReplayTail replays what `agent tail` dead-lettered: it takes
// the same PATH... and flags as the tail command (so the same state
// directory and destination), e.g.
//
//	agent dead-letter replay --tail app.log --to https://collector/ingest
func cmdDeadLetterReplayTail(args []string, stdout, stderr io.Writer) int {
	_, o, paths, code, ok := parseTailArgs(args, stdout, stderr)
	if !ok {
		return code
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "agent dead-letter replay --tail: the PATH... of the agent tail command is required (it names the state directory)")
		return exitUsage
	}
	in, err := classifyInputs(paths)
	if err != nil {
		fmt.Fprintln(stderr, "agent dead-letter replay:", err)
		return exitUsage
	}
	cfg, tmp, err := tailConfig(in, o)
	if err != nil {
		fmt.Fprintln(stderr, "agent dead-letter replay:", err)
		return exitUsage
	}
	if tmp {
		// A temporary state directory holds no dead letters to replay.
		os.RemoveAll(cfg.StateDir)
		fmt.Fprintln(stderr, "agent dead-letter replay: agent tail to stdout keeps no state; nothing to replay")
		return exitUsage
	}
	if _, err := os.Stat(cfg.StateDir); o.stateDir == "" && errors.Is(err, os.ErrNotExist) {
		// The state directory is named after the paths and the
		// destination: another --to, or other paths, name another one.
		fmt.Fprintf(stderr, "agent dead-letter replay --tail: no agent tail ran with these paths and this destination (no state in %s): "+
			"give the PATH... and --to of the tail command as it was run (or its --state-dir)\n", cfg.StateDir)
		return exitFailed
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "agent dead-letter replay:", err)
		return exitUsage
	}
	log := newLogger(stderr, o.logLevel, "text")
	return replay(cfg, log, agent.ReplayOptions{}, "agent dead-letter replay --tail ...", stdout, stderr)
}

// replay runs the replay; cmd is the command line to suggest running as
// the state directory's owner when it is run as root in another user's.
func replay(cfg agent.Config, log *slog.Logger, opt agent.ReplayOptions, cmd string, stdout, stderr io.Writer) int {
	// As root in the service's state directory, the files the replay
	// makes (the dead-letter files it rewrites, their lock, the spool of
	// a flow) would be root's, and the service would fail on them: the
	// warning agent run gives.
	warnForeignStateDir(log, cfg.StateDir, strings.TrimSpace(cmd))
	ctx, stop := watchSignals(signalOptions{log: log, stderr: stderr})
	defer stop()
	res, err := agent.ReplayDeadLetters(ctx, cfg, agent.Settings{Logger: log, Version: version, Stdout: stdout, Components: components()}, opt)
	if h := permissionHint(err, cfg.StateDir); h != "" {
		log.Error("permission denied", "hint", h)
	}
	if err == nil || res != (agent.ReplayResult{}) {
		other := ""
		if opt.Flow != "" {
			other = fmt.Sprintf("; %d of other flows than %s left as they were", res.OtherFlows, opt.Flow)
		}
		fmt.Fprintf(stderr, "agent dead-letter replay: %d delivered, %d rejected again, %d not replayed (kept in the dead-letter file)%s\n",
			res.Delivered, res.Rejected, res.Kept, other)
	}
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "agent dead-letter replay: interrupted; run it again to go on")
		return exitFailed
	case err != nil:
		fmt.Fprintln(stderr, "agent dead-letter replay:", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "agent: "), "replay: "))
		return exitFailed
	case res.Rejected > 0 || res.Kept > 0:
		return exitFailed
	}
	return exitOK
}
