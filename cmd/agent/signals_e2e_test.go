package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// signalTestConfig writes an agent run configuration shipping dir/app.log
// (n lines) to url with JSON logs, and returns its path. extra is added at
// the top level.
func signalTestConfig(t *testing.T, dir, url string, n int, extra string) string {
	t.Helper()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 100)
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
state_dir: %s
shutdown_timeout: 30s
log: {level: info, format: json}
%s
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: sink
    type: http
    http: {url: %q}
flows:
  - name: main
    sources: [app]
    output: sink
    sender: {backoff_max: 1s}
`, filepath.Join(dir, "state"), extra, log, url)), 0o600))
	return cfg
}

// jsonLines parses every stderr line as a JSON log record.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(strings.TrimSpace(out)) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "not a JSON line: %q; stderr:\n%s", line, tail(out, 4000))
		recs = append(recs, rec)
	}
	return recs
}

// Under journald with log.format json every line must be JSON, the forced
// exit's too: a second SIGTERM, after the first has begun a shutdown that
// waits for a destination that is down, exits at once with status 1 and
// its last stderr line is a JSON record saying why.
func TestRun_SecondSignalIsLoggedAsJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newSink(t)
	s.stop()
	// The destination down and no spool room (the state directory's disk
	// under min_free_bytes): the graceful shutdown waits for the
	// destination (shutdown_timeout 30s) with the records in memory.
	admin := freeAddr(t)
	cfg := signalTestConfig(t, dir, s.URL(), 1000, fmt.Sprintf("spool: {min_free_bytes: 1000TiB}\nadmin: {listen: %q}", admin))
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_direct_held_aggregates") > 0 },
		"the direct path never held an undelivered aggregate")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	first := time.Now()
	p.waitFor(t, 30*time.Second, func() bool { return strings.Contains(p.output(), `"stopping: delivering what was read"`) },
		"the first signal did not start the shutdown")
	time.Sleep(time.Until(first.Add(signalCoalesce + 200*time.Millisecond)))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, exitFailed, p.wait(t, 10*time.Second), "a second signal exits at once with status 1; stderr:\n%s", p.stderr.String())
	recs := jsonLines(t, p.stderr.String())
	last := recs[len(recs)-1]
	require.Equal(t, "second signal, exiting now", last["msg"], "stderr:\n%s", p.stderr.String())
	require.Equal(t, "WARN", last["level"])
	require.Equal(t, "terminated", last["signal"])
}

// A stop signal that comes while agent run is still starting (its packages
// initialising, its configuration being read) is a normal stop: exit 0 and
// logged, not the default action of SIGTERM (killed, status 143, nothing
// logged). Before the Go runtime has initialised os/signal nothing can
// catch it, so the signal is sent at the first package initialised after
// os/signal (GODEBUG=inittrace=1 prints a line as each one is), a few
// milliseconds into the process.
func TestRun_SIGTERMWhileStartingIsACleanStop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newSink(t)
	cfg := signalTestConfig(t, dir, s.URL(), 10, `admin: {listen: "off"}`)
	for i := range 3 {
		cmd := agentCmd("run", "-c", cfg)
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
		pipe, err := cmd.StderrPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		var lines []string
		sc := bufio.NewScanner(pipe)
		afterSignal := false
		for sc.Scan() {
			line := sc.Text()
			lines = append(lines, line)
			if strings.HasPrefix(line, "init os/signal ") {
				afterSignal = true
			} else if afterSignal && strings.HasPrefix(line, "init ") && !strings.HasPrefix(line, "init github.com/kplagent/agent/internal/earlysignal ") {
				require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
				afterSignal = false
			}
		}
		waitErr := cmd.Wait()
		out := strings.Join(lines, "\n")
		require.Equal(t, exitOK, cmd.ProcessState.ExitCode(), "round %d: an early SIGTERM is a normal stop; %v; stderr:\n%s", i, waitErr, tail(out, 4000))
		var logs []string
		for _, l := range lines {
			if !strings.HasPrefix(l, "init ") {
				logs = append(logs, l)
			}
		}
		recs := jsonLines(t, strings.Join(logs, "\n"))
		var msgs []any
		for _, r := range recs {
			msgs = append(msgs, r["msg"])
		}
		require.Contains(t, msgs, "stopping: delivering what was read", "round %d: stderr:\n%s", i, out)
		require.Equal(t, "agent stopped", recs[len(recs)-1]["msg"], "round %d: stderr:\n%s", i, out)
	}
}
