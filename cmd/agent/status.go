package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kplagent/agent/agent"
)

// statusFlags are the flags `agent status` and `agent top` share.
type statusFlags struct {
	cfgPath string
	admin   string
	fs      *flag.FlagSet
}

func (f *statusFlags) register(fs *flag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.cfgPath, "c", defaultConfigPath, "config file (its admin.listen is the address asked)")
	fs.StringVar(&f.cfgPath, "config", defaultConfigPath, "config file")
	fs.StringVar(&f.admin, "admin", "", "the agent's admin address HOST:PORT (default: admin.listen of the config file, else "+agent.DefaultAdminListen+")")
}

// cfgGiven reports whether -c or --config was on the command line.
func (f *statusFlags) cfgGiven() bool {
	given := false
	if f.fs != nil {
		f.fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == "c" || fl.Name == "config" })
	}
	return given
}

// adminURL is the base URL of the running agent's admin endpoint.
func (f *statusFlags) adminURL() (string, error) {
	addr := f.admin
	if addr == "" {
		addr = agent.DefaultAdminListen
		_, err := os.Stat(f.cfgPath)
		if err != nil && f.cfgGiven() {
			// A file named on the command line that cannot be read is a
			// mistake to report, not a reason to ask the default address
			// (where another agent, or none, listens).
			return "", fmt.Errorf("config: %w (--admin HOST:PORT asks an address without it)", err)
		}
		if err == nil {
			// Only admin.listen: the rest of the file is the running
			// agent's business (its environment, its files, its reload).
			listen, err := agent.AdminListen(f.cfgPath)
			if err != nil {
				// A bad edit: the running agent keeps the configuration
				// it loaded, and is still to be seen. Guessing the
				// default address could show another agent, or none.
				return "", fmt.Errorf("%w\nthe admin address cannot be read from %s; the running agent keeps the configuration it loaded: ask it with --admin HOST:PORT (its admin.listen; %s unless the file set another)", err, f.cfgPath, agent.DefaultAdminListen)
			}
			addr = listen
		}
	}
	if addr == "" || addr == "off" {
		return "", fmt.Errorf("the admin endpoint is off (admin.listen in %s); set it to see the agent's status", f.cfgPath)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("admin address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: ask locally
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// reloadTimeout is how long agent reload waits for the agent's answer by
// default, and why: the config file's shutdown_timeout (the flows a reload
// changes stop first) plus reloadMargin for the new ones to start. When
// the file cannot be read (--admin without it, or not YAML: the agent,
// not the caller, reports that) shutdown_timeout is unknown, and
// reloadUnknownTimeout is waited.
func (f *statusFlags) reloadTimeout() (time.Duration, string) {
	s, err := agent.ReadAdminSettings(f.cfgPath)
	if err != nil {
		return reloadUnknownTimeout, fmt.Sprintf("shutdown_timeout unknown: %s cannot be read", f.cfgPath)
	}
	return s.ShutdownTimeout + reloadMargin, fmt.Sprintf("shutdown_timeout %s + %s", s.ShutdownTimeout, reloadMargin)
}

const (
	// reloadMargin is what agent reload waits beyond shutdown_timeout
	// for the new flows to start.
	reloadMargin = 30 * time.Second
	// reloadUnknownTimeout is what it waits when shutdown_timeout is
	// unknown: systemd's default stop timeout (90 s, which
	// shutdown_timeout should stay under) plus the margin.
	reloadUnknownTimeout = 90*time.Second + reloadMargin
)

// statusTimeout bounds agent status's and agent top's request: /status
// answers from memory at once unless the agent is stuck.
const statusTimeout = 5 * time.Second

// fetchStatus reads GET /status.
func fetchStatus(ctx context.Context, base string) (agent.Status, []byte, error) {
	var st agent.Status
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/status", nil)
	if err != nil {
		return st, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			// Something accepted the connection (or the SYN waits in a
			// full backlog) and did not answer: not "is it running?".
			return st, nil, fmt.Errorf("%s/status did not answer within %s: the agent (or whatever listens there) is stuck, stopped (SIGSTOP, a debugger) or starved", base, statusTimeout)
		}
		return st, nil, fmt.Errorf("is the agent running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return st, nil, err
	}
	agentAnswered := resp.Header.Get(agent.AdminHeader) != ""
	if resp.StatusCode != http.StatusOK {
		// An agent answers /status with 200 or, before its pipeline
		// runs, 503 (agents older than AdminHeader too).
		if !agentAnswered && resp.StatusCode != http.StatusServiceUnavailable {
			return st, nil, notAnAgent(base, "/status", resp.Status)
		}
		return st, nil, fmt.Errorf("%s/status: %s", base, resp.Status)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		if !agentAnswered {
			return st, nil, notAnAgent(base, "/status", resp.Status+" with a body that is not an agent's status")
		}
		return st, nil, fmt.Errorf("%s/status: %w", base, err)
	}
	return st, body, nil
}

// notAnAgent is the error of a command whose request to base was answered
// by a program that is not an agent's admin endpoint (another server on
// that port): path is what was asked, got what it answered.
func notAnAgent(base, path, got string) error {
	return fmt.Errorf("%s answered, but it is not an agent's admin endpoint (its %s gave %s): check the address "+
		"(--admin HOST:PORT, or admin.listen in the file given with -c; %s by default): another program listens there, "+
		"and the agent listens elsewhere, or not at all (is it running?)", base, path, got, agent.DefaultAdminListen)
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf statusFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON (for scripts)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if extraArgs(fs, stderr, "the configuration file is given with -c FILE") {
		return exitUsage
	}
	base, err := sf.adminURL()
	if err != nil {
		fmt.Fprintln(stderr, "agent status:", err)
		return exitUsage
	}
	st, raw, err := fetchStatus(context.Background(), base)
	if err != nil {
		fmt.Fprintln(stderr, "agent status:", err)
		return exitFailed
	}
	if *asJSON {
		_, _ = stdout.Write(raw)
		return exitOK
	}
	printStatus(stdout, st, time.Now())
	return exitOK
}

// printStatus writes st as tables.
func printStatus(w io.Writer, st agent.Status, now time.Time) {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY: " + st.NotReady
	}
	state := st.State + " for " + st.Uptime
	if st.State != "running" {
		// Not "stopping for 2h": the uptime is not how long it stops.
		state = fmt.Sprintf("%s (up %s)", st.State, st.Uptime)
	}
	if st.ReloadingFor != "" {
		state = fmt.Sprintf("%s for %s (up %s)", st.State, st.ReloadingFor, st.Uptime)
	}
	fmt.Fprintf(w, "agent %s, %s, %s; dead-lettered %d\n", st.Version, state, ready, st.DeadLettered)
	for _, s := range st.Stalled {
		fmt.Fprintln(w, "  "+s)
	}
	if lr := st.LastReload; lr != nil && lr.Result != "ok" {
		// The file on disk is not what runs, and a restart would fail on
		// it: say so where the operator looks.
		fmt.Fprintf(w, "LAST RELOAD REFUSED (%s): the configuration loaded before it still runs; fix the file (a restart reads it too):\n", ago(now, lr.Time))
		for _, l := range strings.Split(strings.TrimRight(lr.Error, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FLOW\tOUTPUT\tIN/S\tBACKLOG\tBYTES\tOLDEST\tSPOOL")
	for _, f := range st.Flows {
		out := f.Output
		if f.OnFailover {
			out += " (failover; primary " + f.Primary + " failing)"
		}
		spool := "ok"
		if f.Spool.Blocked {
			spool = "full, sources paused"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", f.Name, out, human(f.RecordsPerSec), f.Spool.Entries, humanBytes(float64(f.Spool.Bytes)), f.Spool.OldestAge, spool)
	}
	_ = tw.Flush()
	for _, f := range st.Flows {
		// Nothing is sent and nothing fails meanwhile: without this line
		// the output reads ok and the backlog empty.
		if m := f.ShardMapWait; m != nil {
			fmt.Fprintf(w, "flow %s: NO SHARD MAP for %s: records wait unread in the sources; last error: %s\n", f.Name, m.For, m.LastError)
		}
	}
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tTYPE\tRECORDS\tLAST READ\tFILE\tBEHIND\tUNCOMMITTED")
	for _, f := range st.Flows {
		for _, s := range f.Sources {
			last := "never"
			if s.LastRead != nil {
				last = ago(now, *s.LastRead)
			}
			if len(s.Files) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t\t\t\n", s.Name, s.Type, s.RecordsRead, last)
				continue
			}
			for i, fi := range s.Files {
				name, typ, recs, lr := s.Name, s.Type, fmt.Sprint(s.RecordsRead), last
				if i > 0 {
					name, typ, recs, lr = "", "", "", ""
				}
				path := fi.Path
				if fi.State != "" && fi.State != "open" {
					path += " (" + fi.State + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, typ, recs, lr, path, humanBytes(float64(fi.Behind)), humanBytes(float64(fi.Uncommitted)))
			}
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTPUT\tTYPE\tSTATE\tACTIVE\tOUT/S\tSENT\tBYTES\tLAST OK\tLAST ERROR")
	outs := append([]agent.OutputStatus(nil), st.Outputs...)
	sort.Slice(outs, func(i, j int) bool { return outs[i].Name < outs[j].Name })
	for _, o := range outs {
		lastOK := "never"
		if o.LastSuccess != nil {
			lastOK = ago(now, *o.LastSuccess)
		}
		lastErr := ""
		if o.LastErrorAt != nil {
			lastErr = ago(now, *o.LastErrorAt) + ": " + truncate(o.LastError, 80)
		}
		state := o.State
		switch {
		case o.State == agent.OutputStalled:
			state += " (sending for " + o.SendingFor + ")"
		case o.State == agent.OutputSending && o.SendingFor != "":
			state += " for " + o.SendingFor
		case o.FailingFor != "":
			state += " for " + o.FailingFor
		}
		active := ""
		if o.Active {
			active = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", o.Name, o.Type, state, active, human(o.RecordsPerSec), o.RecordsSent, humanBytes(float64(o.BytesSent)), lastOK, lastErr)
	}
	_ = tw.Flush()
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d < time.Second {
		return "now"
	}
	return d.Round(time.Second).String() + " ago"
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

// topEvery is how often `agent top` refreshes.
const topEvery = time.Second

func cmdTop(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf statusFlags
	sf.register(fs)
	n := fs.Int("n", 0, "print this many snapshots, then exit (default: until q or Ctrl-C on a terminal; 1 when stdout is not a terminal)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if extraArgs(fs, stderr, "the configuration file is given with -c FILE") {
		return exitUsage
	}
	if *n < 0 {
		fmt.Fprintln(stderr, "agent top: -n must not be negative")
		return exitUsage
	}
	base, err := sf.adminURL()
	if err != nil {
		fmt.Fprintln(stderr, "agent top:", err)
		return exitUsage
	}
	// On a terminal the screen is redrawn; elsewhere (a pipe, a file, a
	// log) each snapshot is printed plainly, after its time, without the
	// escape codes, and one is the default: nobody is there to quit.
	screen := isTerminal(stdout)
	iterations := *n
	if iterations == 0 && !screen {
		iterations = 1
	}
	ctx, stop := watchSignals(signalOptions{stderr: stderr})
	defer stop()
	quit := make(chan struct{})
	if f, ok := stdin.(*os.File); ok {
		if restore, err := cbreak(f); err == nil {
			defer restore()
		}
		go func() { // q quits; the reader ends with the process
			buf := make([]byte, 1)
			for {
				n, err := f.Read(buf)
				if err != nil {
					return
				}
				if n == 1 && (buf[0] == 'q' || buf[0] == 'Q') {
					close(quit)
					return
				}
			}
		}()
	}
	t := time.NewTicker(topEvery)
	defer t.Stop()
	answered := false
	for i := 1; ; i++ {
		st, _, err := fetchStatus(ctx, base)
		switch {
		case errors.Is(err, context.Canceled):
			return exitOK
		case err != nil && (!answered || !screen):
			// No agent to watch (or, in plain output, no longer one): the
			// message agent status gives, not a screen retrying forever.
			fmt.Fprintln(stderr, "agent top:", err)
			return exitFailed
		case err != nil:
			// The agent answered before: it may be restarting. The
			// person watching sees it and quits when they want.
			fmt.Fprint(stdout, "\033[H\033[2J") // home, clear
			fmt.Fprintf(stdout, "agent top: %v (retrying; q or Ctrl-C to quit)\n", err)
		case screen:
			answered = true
			fmt.Fprint(stdout, "\033[H\033[2J") // home, clear
			printStatus(stdout, st, time.Now())
			fmt.Fprintf(stdout, "\n%s  (q or Ctrl-C to quit)\n", time.Now().Format(time.TimeOnly))
		default:
			answered = true
			if i > 1 {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintln(stdout, time.Now().Format(time.RFC3339))
			printStatus(stdout, st, time.Now())
		}
		if iterations > 0 && i >= iterations {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-quit:
			return exitOK
		case <-t.C:
		}
	}
}

// cmdReload asks the running agent to re-read its configuration (POST
// /reload; SIGHUP does the same without an answer). It waits for the
// result: exit 0 once the new configuration runs (with a note when some
// settings need a restart), 1 with the configuration's problems when it
// was refused (the running pipeline stays).
func cmdReload(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf statusFlags
	sf.register(fs)
	timeout := fs.Duration("timeout", 0, "how long to wait for the agent's answer (default: the config's shutdown_timeout + "+reloadMargin.String()+"; "+reloadUnknownTimeout.String()+" when the file cannot be read)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if extraArgs(fs, stderr, "the configuration file is given with -c FILE") {
		return exitUsage
	}
	if *timeout < 0 {
		fmt.Fprintln(stderr, "agent reload: --timeout must not be negative")
		return exitUsage
	}
	base, err := sf.adminURL()
	if err != nil {
		fmt.Fprintln(stderr, "agent reload:", err)
		return exitUsage
	}
	wait, why := *timeout, "--timeout"
	if wait == 0 {
		wait, why = sf.reloadTimeout()
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/reload", nil)
	if err != nil {
		fmt.Fprintln(stderr, "agent reload:", err)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		defer resp.Body.Close()
	}
	var body []byte
	if err == nil {
		body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			fmt.Fprintf(stderr, "agent reload: %s/reload did not answer within %s (%s): the agent (or whatever listens there) is stuck, stopped (SIGSTOP, a debugger) or starved; it may still reload when it resumes (see agent status)\n", base, wait, why)
			return exitFailed
		}
		fmt.Fprintln(stderr, "agent reload: is the agent running?", err)
		return exitFailed
	}
	// An agent answers 200 "reloaded", 422 (refused) or 501 (it cannot
	// reload); agents older than AdminHeader do not mark their answers.
	if resp.Header.Get(agent.AdminHeader) == "" && resp.StatusCode != http.StatusUnprocessableEntity &&
		!bytes.HasPrefix(body, []byte("reloaded\n")) && !bytes.HasPrefix(body, []byte("this agent cannot reload")) {
		fmt.Fprintln(stderr, "agent reload:", notAnAgent(base, "POST /reload", resp.Status))
		return exitFailed
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "agent reload: refused, the running configuration stays:\n%s", body)
		return exitFailed
	}
	fmt.Fprint(stdout, string(body))
	return exitOK
}
