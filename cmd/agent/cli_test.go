package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/testport"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent"
)

func runBin(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	// A command that should end but waits (agent top retrying an agent
	// that does not run) fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBin, args...)
	cmd.SysProcAttr = childAttr() // see agentCmd
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func TestValidate_ExampleConfigIsValid(t *testing.T) {
	t.Setenv("COLLECTOR_TOKEN", "t")
	out, errOut, code := runBin(t, "validate", "-c", "../../agent.yaml.example")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "agent.yaml.example: ok")
}

func TestValidate_BrokenConfigListsEveryProblemWithFileLineAndExits2(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`state_dir: /tmp/x
spool:
  sync: sometimes
sources:
  - name: app
    type: file
    file: {include: [/var/log/*.log], start_at: middle}
outputs:
  - name: out
    type: http
    http: {url: "ftp://example.com", format: xml}
flows:
  - name: main
    sources: [app]
    output: out
    sendr: {}
`), 0o600))
	_, errOut, code := runBin(t, "validate", "-c", p)
	require.Equal(t, 2, code)
	// Unknown keys do not hide the other problems: all are listed at once.
	require.Equal(t, p+`:3: spool.sync: must be "always", "interval" or "never", got "sometimes"
`+p+`:7: sources[0].file.start_at: must be "beginning" or "end", not "middle"
`+p+`:11: outputs[0].http.url: scheme "ftp" not supported (want http or https)
`+p+`:11: outputs[0].http.format: unknown "xml" (want ndjson, json, raw, raw-packed, kafka-rest-v2 or kafka-rest-v3)
`+p+`:16: flows[0].sendr: unknown field "sendr" (did you mean "sender"?)
`, errOut)
	_, errOut2, code := runBin(t, "run", "-c", p)
	require.Equal(t, 2, code)
	require.Equal(t, errOut, errOut2, "run rejects the config as validate does")
}

func TestRun_BadConfigExits2(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(p, []byte("flows: [\n"), 0o600))
	_, errOut, code := runBin(t, "run", "-c", p)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, p+":")
}

func TestTailOnce_StdoutPrintsEveryLineAndAgainOnRerun(t *testing.T) {
	t.Parallel()
	for range 2 { // stdout has no state to resume: each run prints everything
		out, errOut, code := runBin(t, "tail", "--once", "../../testdata/sample.log")
		require.Equal(t, 0, code, errOut)
		want, err := os.ReadFile("../../testdata/sample.log")
		require.NoError(t, err)
		require.Equal(t, string(want), out)
	}
}

func TestTailOnce_FileDestinationThenResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 1000, 80)
	dest := filepath.Join(dir, "out")
	state := filepath.Join(dir, "state")
	_, errOut, code := runBin(t, "tail", "--once", log, "--to", "file://"+dest, "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	writeLog(t, log, 1000, 1500, 80)
	_, errOut, code = runBin(t, "tail", "--once", log, "--to", "file://"+dest, "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	files, err := filepath.Glob(filepath.Join(dest, "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	counts := map[int]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			n, ok := lineNumber(line)
			require.True(t, ok, "%q", line)
			counts[n]++
		}
	}
	require.Len(t, counts, 1500)
	for n, c := range counts {
		require.Equal(t, 1, c, "line %d delivered %d times: the second run must resume", n, c)
	}
}

func TestTail_UnknownDestinationSchemeIsAUsageError(t *testing.T) {
	t.Parallel()
	_, errOut, code := runBin(t, "tail", "x.log", "--to", "gopher://host/x")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown scheme "gopher"`)
}

// A flag that only one kind of destination takes is refused with the others
// (a usage error naming the flag and the destination's type), not ignored.
func TestTail_FlagOfAnotherDestinationTypeIsAUsageError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		to   string
		args []string
		want string
	}{
		{"kafka://127.0.0.1:1/logs", []string{"--compression", "zstd"}, "--compression does not apply to a kafka destination (it applies to http)"},
		{"kafka://127.0.0.1:1/logs", []string{"--header", "X-Team: web"}, "--header does not apply to a kafka destination (it applies to http)"},
		{"kafka://127.0.0.1:1/logs", []string{"--gzip=false", "--timeout", "5s"}, "--gzip does not apply to a kafka destination (it applies to http); --timeout does not apply to a kafka destination (it applies to http, kinesis, firehose)"},
		{"kinesis://logs?region=us-east-1", []string{"--http-format", "json"}, "--http-format does not apply to a kinesis destination (it applies to http)"},
		{"kinesis://logs?region=us-east-1", []string{"--encoding", "text"}, "--encoding does not apply to a kinesis destination (it applies to http, stdout, file)"},
		{"file:///tmp/out", []string{"--bearer-token", "tok"}, "--bearer-token does not apply to a file destination (it applies to http)"},
		{"-", []string{"--ca-file", "ca.pem"}, "--ca-file does not apply to a stdout destination (it applies to http, kafka)"},
		{"blackhole:", []string{"--basic-auth", "u:p"}, "--basic-auth does not apply to a blackhole destination (it applies to http)"},
	} {
		args := append([]string{"tail", "--once", "no-such.log", "--to", tc.to}, tc.args...)
		_, errOut, code := runBin(t, args...)
		require.Equal(t, 2, code, "%v: %s", args, errOut)
		require.Equal(t, "agent tail: "+tc.want+"\n", errOut, "%v", args)
	}
	// Flags the destination takes pass (the file is missing: exit 1).
	_, errOut, code := runBin(t, "tail", "--once", "no-such.log", "--to", "kafka://127.0.0.1:1/logs", "--insecure-skip-verify")
	require.Equal(t, 1, code, errOut)
	_, errOut, code = runBin(t, "tail", "--once", "no-such.log", "--to", "kinesis://logs?region=us-east-1", "--timeout", "5s")
	require.Equal(t, 1, code, errOut)
}

// --partition-key with a destination that does not send the key (stdout,
// file://, blackhole:, Firehose, HTTP in ndjson or json, Kafka with
// ?key=none) is refused, naming the flag and the destination, not computed
// and dropped.
func TestTail_PartitionKeyWithoutKeyedDestinationIsAUsageError(t *testing.T) {
	t.Parallel()
	noKey := "(its records carry no partition key; it applies to kinesis, kafka and http with --http-format raw, raw-packed, kafka-rest-v2 or kafka-rest-v3)"
	for _, tc := range []struct {
		to   string
		args []string
		want string
	}{
		{"-", nil, "--partition-key does not apply to a stdout destination with format ndjson (its records carry no partition key)"},
		{"file:///tmp/out", nil, "--partition-key does not apply to a file destination with format ndjson (its records carry no partition key)"},
		{"blackhole:", nil, "--partition-key does not apply to a blackhole destination " + noKey},
		{"firehose://logs?region=us-east-1", nil, "--partition-key does not apply to a firehose destination " + noKey},
		{"http://127.0.0.1:1/in", nil, "--partition-key does not apply to a http destination with format ndjson (its records carry no partition key)"},
		{"http://127.0.0.1:1/in", []string{"--http-format", "json"}, "--partition-key does not apply to a http destination with format json (its records carry no partition key)"},
		{"kafka://127.0.0.1:1/logs?key=none", nil, "--partition-key does not apply to a kafka destination with key none (its records carry no partition key)"},
	} {
		args := append([]string{"tail", "--once", "no-such.log", "--to", tc.to, "--partition-key", "hostname"}, tc.args...)
		_, errOut, code := runBin(t, args...)
		require.Equal(t, 2, code, "%v: %s", args, errOut)
		require.Equal(t, "agent tail: "+tc.want+"\n", errOut, "%v", args)
	}
	// Destinations that send the key take it (the file is missing: exit 1).
	for _, args := range [][]string{
		{"--to", "kafka://127.0.0.1:1/logs", "--partition-key", "field:user"},
		{"--to", "kinesis://logs?region=us-east-1", "--partition-key", "deterministic"},
		{"--to", "http://127.0.0.1:1/in", "--http-format", "raw-packed", "--partition-key", "fixed:a"},
		{"--to", "http://127.0.0.1:1/topics/logs", "--http-format", "kafka-rest-v2", "--partition-key", "hostname"},
	} {
		_, errOut, code := runBin(t, append([]string{"tail", "--once", "no-such.log"}, args...)...)
		require.Equal(t, 1, code, "%v: %s", args, errOut)
		require.Contains(t, errOut, "no such file", "%v", args)
	}
}

// The file source's flags (where reading starts, multi-line records, saved
// positions) are refused when no input is a file: standard input, named
// pipes and sockets would ignore them.
func TestTail_FileFlagWithoutFileInputIsAUsageError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "in.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 5, 40)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-", "--from-end"}, "--from-end applies to files; the inputs here are standard input"},
		{[]string{"-", "--from-beginning"}, "--from-beginning applies to files; the inputs here are standard input"},
		{[]string{"tcp://127.0.0.1:0", "--from-end"}, "--from-end applies to files; the inputs here are sockets"},
		{[]string{"udp://127.0.0.1:0", "unix://" + filepath.Join(dir, "s.sock"), "--multiline-start", "^\\S"}, "--multiline-start applies to files; the inputs here are sockets"},
		{[]string{fifo, "--reset"}, "--reset applies to files; the inputs here are named pipes"},
		{[]string{"--once", log, "--reset"}, "--reset does not apply to a stdout destination without --state-dir (each run starts afresh, with no saved positions)"},
		{[]string{"-", "tcp://127.0.0.1:0", "--from-end", "--multiline-start", "^a"},
			"--from-end applies to files; the inputs here are standard input and sockets; --multiline-start applies to files; the inputs here are standard input and sockets"},
	} {
		_, errOut, code := runBin(t, append([]string{"tail"}, tc.args...)...)
		require.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		require.Equal(t, "agent tail: "+tc.want+"\n", errOut, "%v", tc.args)
	}
	// With a file among the inputs they apply (to it): the run reads the
	// file from its end (nothing) and the empty standard input, and ends.
	out, errOut, code := runBin(t, "tail", "--once", log, "-", "--from-end", "--multiline-start", "^L", "--reset", "--state-dir", filepath.Join(dir, "state"), "--to", "file://"+filepath.Join(dir, "out"))
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	out, errOut, code = runBin(t, "tail", "--once", log, "--from-beginning")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 5, strings.Count(out, "\n"), out)
}

// An explicit --spool-bypass is refused where every aggregate goes through
// the spool anyway: inputs that cannot be read again, and the ordered sends
// of stdout, file:// and --concurrency 1.
func TestTail_SpoolBypassWhereEverythingIsSpooledIsAUsageError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 3, 40)
	sink := "blackhole:"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{log, "-", "--to", sink, "--spool-bypass"}, "--spool-bypass applies when every input is a file (with standard input, named pipes or sockets among them every aggregate goes through the spool)"},
		{[]string{"tcp://127.0.0.1:0", "--to", sink, "--spool-bypass=true"}, "--spool-bypass applies when every input is a file (with standard input, named pipes or sockets among them every aggregate goes through the spool)"},
		{[]string{log, "--spool-bypass"}, "--spool-bypass does not apply to a stdout destination (its records go through the spool, in order)"},
		{[]string{log, "--to", "file://" + filepath.Join(dir, "out"), "--spool-bypass"}, "--spool-bypass does not apply to a file destination (its records go through the spool, in order)"},
		{[]string{log, "--to", sink, "--concurrency", "1", "--spool-bypass"}, "--spool-bypass does not apply with --concurrency 1 (its records go through the spool, in order)"},
	} {
		_, errOut, code := runBin(t, append([]string{"tail", "--once", "--state-dir", filepath.Join(dir, "state")}, tc.args...)...)
		require.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		require.Equal(t, "agent tail: "+tc.want+"\n", errOut, "%v", tc.args)
	}
	// Files to another destination take it; --spool-bypass=false is what
	// happens anyway with the others, and passes.
	for _, args := range [][]string{
		{log, "--to", sink, "--spool-bypass"},
		{log, "-", "--to", sink, "--spool-bypass=false"},
		{log, "--spool-bypass=false"},
	} {
		_, errOut, code := runBin(t, append([]string{"tail", "--once", "--state-dir", filepath.Join(dir, "state2")}, args...)...)
		require.Equal(t, 0, code, "%v: %s", args, errOut)
	}
}

func TestTailOnce_PermanentRejectionExits1AndDeadLetters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 10, 80)
	s := newSink(t)
	reject := func(_ int64, w http.ResponseWriter) bool {
		http.Error(w, "schema mismatch", http.StatusBadRequest)
		return true
	}
	s.respond.Store(&reject)
	state := filepath.Join(dir, "state")
	_, errOut, code := runBin(t, "tail", "--once", log, "--to", s.URL(), "--state-dir", state)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "dead-letter")
	out, errOut, code := runBin(t, "dead-letter", "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 10, strings.Count(out, "schema mismatch"), out)
	require.Contains(t, out, "L00000000")
}

func TestTailOnce_NoMatchingFileIsAnErrorAndNamed(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "app.log")
	_, errOut, code := runBin(t, "tail", "--once", missing)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, missing+": no such file")
	out, errOut, code := runBin(t, "tail", "--once", "../../testdata/sample.log", missing)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, missing+": no such file", "a missing path among others is reported, not fatal")
	require.Equal(t, 40, strings.Count(out, "\n"))
}

// An argument a command does not take is a usage error naming it, never
// ignored: `agent run other.yaml` ran /etc/agent/agent.yaml, `agent
// dead-letter list -c FILE` read the default file (the flag parser stops at
// the first argument, so -c was ignored too), `agent status -c TYPO` asked
// the default address as if no file had been named.
func TestCLI_UnexpectedArgumentsAndMissingNamedConfigAreUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"\n"), 0o600))
	missing := filepath.Join(dir, "typo.yaml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", cfg}, `agent run: unexpected argument "` + cfg + `"; the configuration file is given with -c FILE`},
		{[]string{"run", "-c", cfg, "extra"}, `agent run: unexpected argument "extra"`},
		{[]string{"status", cfg}, `agent status: unexpected argument`},
		{[]string{"reload", cfg}, `agent reload: unexpected argument`},
		{[]string{"top", cfg}, `agent top: unexpected argument`},
		{[]string{"dead-letter", "list", "-c", cfg}, `agent dead-letter: unexpected argument "list" (and 2 more)`},
		{[]string{"dead-letter", "replay", "-c", cfg, "app.log"}, `agent dead-letter replay: unexpected argument "app.log"`},
		{[]string{"status", "-c", missing}, "agent status: config: stat " + missing + ": no such file or directory"},
		{[]string{"reload", "--config", missing}, "agent reload: config: stat " + missing},
		{[]string{"tap", "main", "-c", missing}, "agent tap: config: stat " + missing},
		// A file that cannot be read is named after the command, as the
		// other errors of every command are.
		{[]string{"run", "-c", missing}, "agent run: config: open " + missing + ": no such file or directory"},
		{[]string{"validate", "-c", missing}, "agent validate: config: open " + missing},
		{[]string{"dead-letter", "-c", missing}, "agent dead-letter: config: open " + missing},
		{[]string{"dead-letter", "replay", "-c", missing}, "agent dead-letter replay: config: open " + missing},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, errOut, code := runBin(t, tc.args...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, tc.want)
		})
	}
}

// agent status against an agent that accepts the connection but does not
// answer (stopped with SIGSTOP, stuck) ends after its timeout and says so,
// instead of asking "is the agent running? ... context deadline exceeded".
func TestStatus_StuckAgentIsNamedStuckNotAbsent(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	start := time.Now()
	_, errOut, code := runBin(t, "status", "--admin", ln.Addr().String())
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "/status did not answer within 5s")
	require.Contains(t, errOut, "stuck")
	require.NotContains(t, errOut, "is the agent running?")
	require.Less(t, time.Since(start), 30*time.Second)
}

// stuckListener accepts connections and never answers them, as a stopped
// (SIGSTOP) or stuck agent's admin endpoint does.
func stuckListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // held open, never answered
		}
	}()
	return ln.Addr().String()
}

// agent reload against an agent that does not answer ends after --timeout
// (it waited a fixed 5 minutes) and says the agent is stuck.
func TestReload_StuckAgentEndsAfterTimeoutAndIsNamedStuck(t *testing.T) {
	t.Parallel()
	addr := stuckListener(t)
	start := time.Now()
	_, errOut, code := runBin(t, "reload", "--admin", addr, "--timeout", "1s")
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "/reload did not answer within 1s (--timeout)")
	require.Contains(t, errOut, "stuck")
	require.NotContains(t, errOut, "is the agent running?")
	require.Less(t, time.Since(start), 30*time.Second)

	_, errOut, code = runBin(t, "reload", "--admin", addr, "--timeout", "-1s")
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "--timeout must not be negative")
}

// agent top with no agent to ask gives agent status's message and exits 1
// (it retried forever, even where q cannot be typed).
func TestTop_NoAgentFailsAsStatusDoes(t *testing.T) {
	t.Parallel()
	addr := testport.Addr(t) // nobody listens there
	_, statusErr, code := runBin(t, "status", "--admin", addr)
	require.Equal(t, 1, code, statusErr)
	out, errOut, code := runBin(t, "top", "--admin", addr)
	require.Equal(t, 1, code, errOut)
	require.Equal(t, strings.Replace(statusErr, "agent status:", "agent top:", 1), errOut)
	require.Empty(t, out)
}

// agent top writing to a pipe prints plain snapshots, without the
// terminal's clear-screen codes: one by default, -n N for N.
func TestTop_NotATerminalPrintsPlainSnapshots(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		asked.Add(1)
		_ = json.NewEncoder(w).Encode(agent.Status{Version: "9.9.9", State: "running", Uptime: "1m0s", Ready: true})
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	out, errOut, code := runBin(t, "top", "--admin", addr)
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, "\033")
	require.Equal(t, 1, strings.Count(out, "agent 9.9.9, running for 1m0s, ready"), out)
	require.Equal(t, int32(1), asked.Load())

	out, errOut, code = runBin(t, "top", "--admin", addr, "-n", "2")
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, "\033")
	require.Equal(t, 2, strings.Count(out, "agent 9.9.9, running for 1m0s, ready"), out)
	require.Equal(t, int32(3), asked.Load())
}

// agent status -c FILE after a bad edit of FILE says the admin address
// cannot be read from it and how to reach the running agent anyway; the
// suggested --admin does.
func TestStatus_UnparsableConfigSuggestsAdmin(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	require.NoError(t, os.WriteFile(p, []byte("admin:\n  listen: 127.0.0.1:1\n bad: [\n"), 0o600))
	for _, cmd := range []string{"status", "top", "reload"} {
		_, errOut, code := runBin(t, cmd, "-c", p)
		require.Equal(t, 2, code, errOut)
		require.Contains(t, errOut, "agent "+cmd+": config: "+p+": yaml: ")
		require.Contains(t, errOut, "the admin address cannot be read from "+p)
		require.Contains(t, errOut, "--admin HOST:PORT")
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(agent.Status{Version: "9.9.9", State: "running", Uptime: "1m0s", Ready: true})
	}))
	defer srv.Close()
	out, errOut, code := runBin(t, "status", "-c", p, "--admin", strings.TrimPrefix(srv.URL, "http://"))
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "agent 9.9.9, running")
}

// agent tail --spool-max-bytes smaller than the spool's default
// max_entry_bytes (16MiB) lowers its own defaults to fit: no warning about
// a setting the user did not make, and every line delivered.
func TestTailOnce_SmallSpoolCapDoesNotWarnAboutTailsOwnMaxEntryBytes(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile("../../testdata/sample.log")
	require.NoError(t, err)
	// Under 68KiB tail's entries were not lowered (its derivation needed
	// 64KiB): the spool warned at open, and took less than tail's records.
	for _, max := range []string{"1MiB", "200KiB", "67KiB", "40KiB", "16KiB"} {
		t.Run(max, func(t *testing.T) {
			out, errOut, code := runBin(t, "tail", "--once", "--spool-max-bytes", max, "../../testdata/sample.log")
			require.Equal(t, 0, code, errOut)
			require.NotContains(t, errOut, "max_entry_bytes")
			require.NotContains(t, errOut, "WARN")
			require.Equal(t, string(want), out)
		})
	}
	// Smaller is refused, naming the minimum.
	_, errOut, code := runBin(t, "tail", "--once", "--spool-max-bytes", "12KiB", "../../testdata/sample.log")
	require.Equal(t, 2, code, errOut)
	require.Equal(t, "agent tail: --spool-max-bytes: must be at least 16KiB (room for records of 8KiB with their keys and the spool's framing), got 12KiB\n", errOut)
}

// agent reload waits by default the config's shutdown_timeout (the flows a
// reload changes stop first) plus a margin; 90s plus the margin when the
// file cannot be read.
func TestReload_DefaultTimeoutFollowsShutdownTimeout(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(p, []byte("shutdown_timeout: 1m\n"), 0o600))
	d, why := (&statusFlags{cfgPath: p}).reloadTimeout()
	require.Equal(t, 90*time.Second, d)
	require.Equal(t, "shutdown_timeout 1m0s + 30s", why)

	require.NoError(t, os.WriteFile(p, []byte("state_dir: /tmp/x\n"), 0o600))
	d, _ = (&statusFlags{cfgPath: p}).reloadTimeout()
	require.Equal(t, 40*time.Second, d, "the default shutdown_timeout, 10s")

	d, why = (&statusFlags{cfgPath: filepath.Join(dir, "missing.yaml")}).reloadTimeout()
	require.Equal(t, 2*time.Minute, d)
	require.Contains(t, why, "shutdown_timeout unknown")
}

// --help is what the user asked for: every command prints its usage on
// stdout and exits 0 (`agent run --help | less`, `agent tail -h | grep
// envelope`); most printed it on stderr and exited 2, as for a bad flag. A
// bad flag stays a usage error: the flag named on stderr, exit 2.
func TestCLI_HelpOnEveryCommandGoesToStdoutAndExits0(t *testing.T) {
	t.Parallel()
	for _, cmd := range [][]string{
		{"run"}, {"tail"}, {"validate"}, {"status"}, {"top"}, {"tap"}, {"reload"}, {"version"},
		{"dead-letter"}, {"dead-letter", "replay"}, {"dead-letter", "replay", "--tail"},
		{"kpl", "decode"}, {"kpl", "encode"},
	} {
		name := strings.Join(cmd, " ")
		for _, help := range []string{"-h", "--help"} {
			t.Run(name+" "+help, func(t *testing.T) {
				out, errOut, code := runBin(t, append(cmd, help)...)
				require.Equal(t, 0, code, errOut)
				require.Empty(t, errOut)
				require.Contains(t, strings.ToLower(out), "usage")
			})
		}
		t.Run(name+" --no-such-flag", func(t *testing.T) {
			out, errOut, code := runBin(t, append(cmd, "--no-such-flag")...)
			require.Equal(t, 2, code, errOut)
			require.Empty(t, out)
			require.Contains(t, errOut, "flag provided but not defined: -no-such-flag")
		})
	}
}

// Negative counts and durations were taken as the defaults without a word:
// usage errors naming the flag, before anything runs.
func TestTail_NegativeFlagValuesAreUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(log, []byte("a\n"), 0o600))
	for _, tc := range [][]string{
		{"--concurrency", "-2"},
		{"--timeout", "-1s"},
		{"--max-retry-duration", "-1s"},
	} {
		t.Run(tc[0], func(t *testing.T) {
			args := append([]string{"tail", "--once", log, "--to", "http://127.0.0.1:1/x", "--state-dir", filepath.Join(dir, "state")}, tc...)
			out, errOut, code := runBin(t, args...)
			require.Equal(t, 2, code, errOut)
			require.Empty(t, out)
			require.Equal(t, "agent tail: "+tc[0]+" must not be negative\n", errOut)
		})
	}
}

// agent validate -c a.yaml b.yaml checked b.yaml only: the file named with
// -c was dropped without a word, and a broken one passed.
func TestValidate_DashCWithMoreFilesChecksEveryOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	example, err := os.ReadFile(filepath.Join("..", "..", "agent.yaml.example"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(good, example, 0o600))
	require.NoError(t, os.WriteFile(bad, []byte("bogus: 1\n"), 0o600))
	out, errOut, code := runBin(t, "validate", "-c", bad, good)
	require.Equal(t, 2, code, out+errOut)
	require.Contains(t, errOut, bad+":1: bogus: unknown field")
	require.Contains(t, out, good+": ok")
	out, errOut, code = runBin(t, "validate", good)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, good+": ok\n", out)
}

// A socket address without its scheme is the usual slip: validate names the
// forms it takes (it said "first path segment in URL cannot contain colon").
func TestValidate_SocketListenWithoutSchemeNamesTheForms(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
sources:
  - {name: syslog, type: socket, socket: {listen: "127.0.0.1:5140"}}
outputs:
  - {name: out, type: stdout}
flows:
  - {name: main, sources: [syslog], output: out}
`), 0o600))
	_, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, 2, code, errOut)
	require.Equal(t, cfg+`:3: sources[0].socket.listen: "127.0.0.1:5140": want unix:///PATH, unixgram:///PATH, tcp://HOST:PORT or udp://HOST:PORT (first path segment in URL cannot contain colon)`+"\n", errOut)
}

// Two socket sources on one address (tcp://:5140 is 127.0.0.1:5140) are a
// config problem: validate passed them and the second stopped the agent at
// start with "address already in use".
func TestValidate_TwoSocketSourcesOnOneAddress(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
sources:
  - {name: a, type: socket, socket: {listen: "tcp://127.0.0.1:5140"}}
  - {name: b, type: socket, socket: {listen: "tcp://:5140"}}
  - {name: c, type: socket, socket: {listen: "udp://127.0.0.1:5140"}}
outputs:
  - {name: out, type: stdout}
flows:
  - {name: main, sources: [a, b, c], output: out}
`), 0o600))
	_, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, 2, code, errOut)
	require.Equal(t, cfg+`:4: sources[1].socket.listen: source "a" listens on this address already`+"\n", errOut)
}

// A wildcard and another address of its port (0.0.0.0:5140 and
// 127.0.0.1:5140) are a config problem too: the kernel refuses the second
// bind, so validate passed them and the agent failed at start with
// "address already in use". tcp and udp ports are apart.
func TestValidate_WildcardBesideAnAddressOfItsPort(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
sources:
  - {name: all, type: socket, socket: {listen: "tcp://0.0.0.0:5140"}}
  - {name: udp, type: socket, socket: {listen: "udp://127.0.0.1:5140"}}
  - {name: local, type: socket, socket: {listen: "tcp://127.0.0.1:5140"}}
outputs:
  - {name: out, type: stdout}
flows:
  - {name: main, sources: [all, udp, local], output: out}
`), 0o600))
	_, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, 2, code, errOut)
	require.Equal(t, cfg+`:5: sources[2].socket.listen: source "local" cannot listen beside source "all": `+
		`tcp://127.0.0.1:5140 and tcp://0.0.0.0:5140 are one port, and a wildcard address (0.0.0.0 or [::]) binds its port on every address of the host: `+
		`the kernel refuses the second bind with "address already in use"; listen on the wildcard alone, or give the two sources different ports`+"\n", errOut)
}

// A second agent on a state directory in use says which directory and what
// to change (it said "checkpoints: checkpoint: state is locked by another
// agent" and the lock file's path).
func TestTail_SecondRunOnTheSameStateDirSaysWhatToChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(log, []byte("a\n"), 0o600))
	state := filepath.Join(dir, "state")
	p := startAgent(t, "tail", log, "--to", "blackhole:", "--state-dir", state, "--quiet")
	p.waitFor(t, time.Minute, func() bool { // the first agent holds the lock
		f, err := os.Open(filepath.Join(state, "checkpoints.json.lock"))
		if err != nil {
			return false
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return false
		}
		return true
	}, "the first agent did not start")
	_, errOut, code := runBin(t, "tail", log, "--to", "blackhole:", "--state-dir", state, "--quiet")
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "the state directory "+state+" is in use by another agent (")
	require.Contains(t, errOut, "stop that one, or give this one its own state directory (state_dir; agent tail --state-dir)")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// Sizes in messages read as the user wrote them: 10TB came back as "got
// 9765625000KiB" and 3MB as "got 3000000".
func TestValidate_SizesAreShownInTheUnitTheUserWrote(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`state_dir: `+dir+`
spool:
  max_entry_bytes: 10TB
sources:
  - {name: app, type: file, file: {include: [`+dir+`/*.log]}}
outputs:
  - {name: out, type: http, http: {url: "http://127.0.0.1:1/"}}
flows:
  - name: main
    sources: [app]
    output: out
    aggregation: {max_bytes: 10TB, max_pending_bytes: 3MB}
`), 0o600))
	_, errOut, code := runBin(t, "validate", "-c", p)
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "spool.max_entry_bytes: must be between 1 and 1GiB, got 10TB\n")
	require.Contains(t, errOut, "aggregation.max_bytes: must be between 1KiB and 1MiB")
	require.Contains(t, errOut, "got 10TB\n")
	require.Contains(t, errOut, "aggregation.max_pending_bytes: must be between aggregation.max_bytes (10TB) and 4GiB, got 3MB ")
	require.NotContains(t, errOut, "KiB,")
	require.NotContains(t, errOut, "9765625000")
}

// agent status, top, tap and reload pointed at a port where another HTTP
// server listens (python3 -m http.server) said "404 File not found": they
// say that the address answered but is not an agent's admin endpoint, and
// what to check.
func TestStatus_AnotherHTTPServerIsNamedNotAnAgent(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "Unsupported method ('"+r.Method+"')", http.StatusNotImplemented)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<html><body>Error response: File not found</body></html>"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		args []string
		got  string
	}{
		{[]string{"status", "--admin", addr}, "its /status gave 404 Not Found"},
		{[]string{"top", "--admin", addr}, "its /status gave 404 Not Found"},
		{[]string{"tap", "main", "--admin", addr}, "its /tap gave 404 Not Found"},
		{[]string{"reload", "--admin", addr}, "its POST /reload gave 501 Not Implemented"},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			_, errOut, code := runBin(t, tc.args...)
			require.Equal(t, 1, code, errOut)
			require.Contains(t, errOut, "agent "+tc.args[0]+": "+srv.URL+" answered, but it is not an agent's admin endpoint ("+tc.got+")")
			require.Contains(t, errOut, "check the address (--admin HOST:PORT, or admin.listen")
			require.NotContains(t, errOut, "refused, the running configuration stays")
			require.NotContains(t, errOut, "File not found")
		})
	}
	// A server that answers 200 with something else is no agent either.
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<html>welcome</html>"))
	}))
	defer ok.Close()
	_, errOut, code := runBin(t, "status", "--admin", strings.TrimPrefix(ok.URL, "http://"))
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "it is not an agent's admin endpoint (its /status gave 200 OK with a body that is not an agent's status)")
	// tap used to print nothing and wait for ever on such a server.
	_, errOut, code = runBin(t, "tap", "main", "--admin", strings.TrimPrefix(ok.URL, "http://"))
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "agent tap: "+ok.URL+" answered, but it is not an agent's admin endpoint (its /tap gave 200 OK with text/html; charset=utf-8)")
}

// A mistyped flag is one line naming the flag probably meant, not the
// command's usage (agent tail's is 80 lines: the error scrolled away from
// the screen), and says where every flag is listed.
func TestUnknownFlag_OneLineSuggestingTheFlagMeant(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tail", "--onc", "app.log"}, "agent tail: flag provided but not defined: -onc (did you mean --once?); `agent tail -h` lists every flag\n"},
		{[]string{"tail", "app.log", "--form-end"}, "agent tail: flag provided but not defined: -form-end (did you mean --from-end?); `agent tail -h` lists every flag\n"},
		{[]string{"tail", "--state=/tmp/x", "app.log"}, "agent tail: flag provided but not defined: -state (did you mean --state-dir?); `agent tail -h` lists every flag\n"},
		{[]string{"tail", "--qiuet", "app.log"}, "agent tail: flag provided but not defined: -qiuet (did you mean --quiet?); `agent tail -h` lists every flag\n"},
		{[]string{"run", "--confg", "a.yaml"}, "agent run: flag provided but not defined: -confg (did you mean --config?); `agent run -h` lists every flag\n"},
		// Nothing close enough: no guess (a letter is close to every short name).
		{[]string{"tail", "-x", "app.log"}, "agent tail: flag provided but not defined: -x; `agent tail -h` lists every flag\n"},
		{[]string{"tail", "--no-such-flag", "app.log"}, "agent tail: flag provided but not defined: -no-such-flag; `agent tail -h` lists every flag\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := runBin(t, tc.args...)
			require.Equal(t, 2, code, errOut)
			require.Empty(t, out)
			require.Equal(t, tc.want, errOut)
		})
	}
}
