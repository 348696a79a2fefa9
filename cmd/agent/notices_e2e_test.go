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

// noticeConfig writes a config with one file source, a blackhole output
// and one flow; spool and flow are the test's YAML for those blocks.
func noticeConfig(t *testing.T, spool, output, flow string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(p, fmt.Appendf(nil, `state_dir: %s
admin: {listen: "off"}
spool: %s
sources:
  - name: app
    type: file
    file: {include: [%s]}
outputs:
  - name: out
%s
flows:
  - name: main
    sources: [app]
    output: out
%s
`, filepath.Join(dir, "state"), spool, filepath.Join(dir, "app.log"), output, flow), 0o600))
	return p
}

// runUntil starts `agent run -c cfg`, waits until its log has every one of
// want (each as many times as listed), then stops it with SIGTERM and
// returns its log. reload sends SIGHUP once it runs.
func runUntil(t *testing.T, cfg string, reload bool, want ...string) string {
	t.Helper()
	p := startAgent(t, "run", "-c", cfg)
	waitLog := func(what string, n int) {
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(p.output(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q (x%d) in the agent's log:\n%s", what, n, tail(p.output(), 4000))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLog("agent running", 1)
	if reload {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	}
	counts := map[string]int{}
	for _, w := range want {
		counts[w]++
		waitLog(w, counts[w])
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, 30*time.Second), p.output())
	return p.output()
}

// A partition_key set on a flow whose output sends no key is told, naming
// the flow, the key and the output's type, by validate (which still passes)
// and by run at start and at each reload (which still runs).
func TestValidateAndRun_PartitionKeyOnAKeylessOutputWarns(t *testing.T) {
	t.Parallel()
	cfg := noticeConfig(t, "{}", "    type: http\n    http: {url: \"http://127.0.0.1:9/x\"}", "    partition_key: {field: user_id}")
	const msg = `flow "main" sets partition_key {field: user_id}, but its output "out" (http, format ndjson) sends no partition key: the key is ignored there`
	out, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, cfg+": ok\n", out)
	require.Contains(t, errOut, cfg+":16: flows[0].partition_key: warning: "+msg)

	logged := "level=WARN msg=\"config: " + strings.ReplaceAll(msg, `"`, `\"`) // text log quoting
	log := runUntil(t, cfg, true, logged, logged)                              // at start and at the reload
	require.Contains(t, log, "config="+cfg+":16 key=flows[0].partition_key")

	// A destination that sends the key: no warning.
	cfg = noticeConfig(t, "{}", "    type: http\n    http: {url: \"http://127.0.0.1:9/x\", format: raw}", "    partition_key: {field: user_id}")
	_, errOut, code = runBin(t, "validate", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, errOut)
}

// A small spool.max_bytes without segment_bytes or max_entry_bytes was
// refused (twice the 64MiB default segment is more) or, with segment_bytes
// set, warned about the 16MiB default entry size the operator never set.
// Both are now derived from it, said at info level; explicit values that
// do not fit are still warned about.
func TestValidateAndRun_SmallSpoolMaxBytesDerivesTheUnsetSizes(t *testing.T) {
	t.Parallel()
	const note = "4MiB is too small for the spool's default segment and entry sizes: using segment_bytes 1MiB and max_entry_bytes 4092KiB"
	const spoolWarn = "spool: max_entry_bytes is more than fits under max_bytes"
	cfg := noticeConfig(t, "{max_bytes: 4MiB}", "    type: blackhole", "")
	out, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, cfg+": ok\n", out)
	require.Contains(t, errOut, cfg+":3: spool.max_bytes: note: "+note)
	log := runUntil(t, cfg, false, "level=INFO msg=\"config: "+note, "spool: opened")
	require.NotContains(t, log, spoolWarn)
	require.NotContains(t, log, "level=WARN")

	// Set by the operator: kept, and the spool says what it takes.
	cfg = noticeConfig(t, "{max_bytes: 4MiB, segment_bytes: 1MiB, max_entry_bytes: 16MiB}", "    type: blackhole", "")
	_, errOut, code = runBin(t, "validate", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, errOut)
	runUntil(t, cfg, false, spoolWarn)
}

// agent reload answers with the reloaded configuration's warnings, as
// agent validate prints them.
func TestReload_AnswersWithTheConfigWarnings(t *testing.T) {
	t.Parallel()
	cfg := noticeConfig(t, "{}", "    type: stdout", "    partition_key: hostname")
	admin := freeAddr(t)
	data, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), `admin: {listen: "off"}`, fmt.Sprintf("admin: {listen: %q}", admin), 1)), 0o600))
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return strings.Contains(p.output(), "agent running") }, "the agent did not start")
	out, errOut, code := runBin(t, "reload", "--admin", admin)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "reloaded\n"+cfg+`:15: flows[0].partition_key: warning: flow "main" sets partition_key hostname, but its output "out" (stdout, format ndjson) sends no partition key: the key is ignored there (remove it, or use an output or format that sends it)`+"\n", out)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// A spool.max_bytes under 128KiB without segment_bytes was refused, naming
// a segment_bytes (64MiB) the file does not set. Tiny spools (tests, small
// devices) now get segments of a quarter of it, down to 4KiB, said as a
// note, with a warning naming what does not fit in an entry; they spool,
// fill, block and deliver every line. Under 8KiB the error says what to
// set.
func TestValidateAndRun_TinySpoolMaxBytesWorks(t *testing.T) {
	t.Parallel()
	const n = 5000 // ~500 KB through a 64KiB spool
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 100)
	s := newSink(t)
	s.stop()
	admin := freeAddr(t)
	cfgFor := func(maxBytes string) string {
		cfg := filepath.Join(dir, maxBytes+".yaml")
		require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `state_dir: %s
spool: {max_bytes: %s}
admin: {listen: %q}
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
`, filepath.Join(dir, "state"), maxBytes, admin, log, s.URL()), 0o600))
		return cfg
	}

	cfg := cfgFor("6KiB")
	_, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, 2, code)
	require.Equal(t, cfg+":2: spool.max_bytes: must be at least 8KiB (two segments of the smallest segment_bytes, 4KiB), got 6KiB\n", errOut)

	cfg = cfgFor("64KiB")
	out, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, cfg+": ok\n", out)
	require.Contains(t, errOut, cfg+":2: spool.max_bytes: note: 64KiB is too small for the spool's default segment and entry sizes: using segment_bytes 16KiB")
	require.Contains(t, errOut, cfg+":2: spool.max_bytes: warning: 64KiB holds no spool entry over 65448 bytes")

	p := startAgent(t, "run", "-c", cfg)
	require.Eventually(t, func() bool {
		return metric(admin, "agent_spool_blocked_appends") > 0
	}, time.Minute, 50*time.Millisecond, "the spool never filled: bytes %v", metric(admin, "agent_spool_bytes"))
	require.LessOrEqual(t, metric(admin, "agent_spool_bytes"), float64(64<<10))
	s.start()
	require.Eventually(t, func() bool { return s.distinct() == n }, 2*time.Minute, 100*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	requireAllArrived(t, s, n, true)
	require.NotContains(t, p.output(), "level=ERROR")
}
