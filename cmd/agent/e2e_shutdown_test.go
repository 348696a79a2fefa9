package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The destination is down and the spool has no room (its disk under
// min_free_bytes, as a state directory on a small tmpfs under the default
// floor): undelivered aggregates wait in memory and the sources pause.
// SIGTERM with shutdown_timeout 2s must exit 0 within the deadline plus a
// small margin, with one line saying what was left; the next start, with
// the destination up, delivers every line (nothing lost).
func TestRun_SIGTERMWithDownDestinationAndNoSpoolRoom_KeepsTheDeadlineLosesNothing(t *testing.T) {
	t.Parallel()
	const n = 20_000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 100)
	s := newSink(t)
	s.stop()
	admin := freeAddr(t)
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
state_dir: %s
shutdown_timeout: 2s
admin: {listen: %q}
spool: {min_free_bytes: 1000TiB}
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
`, filepath.Join(dir, "state"), admin, log, s.URL())), 0o600))

	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_direct_held_aggregates") > 0 },
		"the direct path never held an undelivered aggregate")
	start := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	code := p.wait(t, time.Minute)
	took := time.Since(start)
	out := p.stderr.String()
	t.Logf("SIGTERM to exit: %s", took.Round(time.Millisecond))
	require.Equal(t, 0, code, out)
	limit := 5 * time.Second // shutdown_timeout, its 1 s margin, and room for a loaded machine
	if raceEnabled {
		limit += time.Second // the race runtime sleeps 1 s at exit
	}
	require.Less(t, took, limit, "shutdown_timeout 2s plus a small margin; stderr:\n%s", tail(out, 4000))
	require.Equal(t, 1, strings.Count(out, "stopped before everything was delivered"), "one summary line; stderr:\n%s", tail(out, 4000))
	require.NotContains(t, out, "level=ERROR", "records left for the next start are no error")
	require.Zero(t, s.distinct(), "the destination was down")

	// Same configuration (still no spool room), destination up: the direct
	// path delivers every line.
	s.start()
	p = startAgent(t, "run", "-c", cfg)
	p.waitFor(t, 2*time.Minute, func() bool { return s.distinct() == n }, "not every line arrived")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	require.Contains(t, p.stderr.String(), "everything read was delivered")
	requireAllArrived(t, s, n, true)
}

// waitFor polls cond until it holds; after d it fails the test with the
// agent's output so far.
func (p *agentProc) waitFor(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	p.waitForf(t, d, cond, func() string { return msg })
}

// waitForf is waitFor with a message made when the wait fails (to say what
// the last poll saw).
func (p *agentProc) waitForf(t *testing.T, d time.Duration, cond func() bool, msgf func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			msg := msgf()
			sw := p.cmd.Stderr.(*syncWriter)
			sw.mu.Lock()
			out := tail(sw.w.String(), 4000)
			sw.mu.Unlock()
			t.Fatalf("%s within %s; stderr:\n%s", msg, d, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
