package main

import (
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gzipFile does what logrotate's compress does to a rotation: name.gz
// holds its bytes, and name is removed.
func gzipFile(t *testing.T, name string) {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	f, err := os.Create(name + ".gz")
	require.NoError(t, err)
	w := gzip.NewWriter(f)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	require.NoError(t, os.Remove(name))
}

// The agent is stopped (SIGTERM) while the application writes on, and
// logrotate runs twice meanwhile with olddir, compress and no
// delaycompress: app.log is moved into old/app.log.1 and compressed, the
// application writes a new app.log, which is rotated the same way (the
// first rotation becoming old/app.log.2.gz). When the agent starts again,
// the rest of the file it was reading is only in old/app.log.2.gz, and the
// version written between the rotations only in old/app.log.1.gz, which it
// never saw. rotated_dirs: [old] lets it find both: every line arrives
// exactly once.
func TestRun_LogrotateOlddirCompressTwiceWhileStopped_EveryLineOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	old := filepath.Join(logDir, "old")
	require.NoError(t, os.MkdirAll(old, 0o755))
	log := filepath.Join(logDir, "app.log")
	s := newSink(t)
	admin := freeAddr(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning, rotated_dirs: [old]}
outputs:
  - name: web
    type: http
    http: {url: %q}
flows:
  - name: main
    sources: [app]
    output: web
`, filepath.Join(dir, "state"), admin, log, s.URL()))
	const size = 120
	writeLog(t, log, 0, 1000, size)
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return s.distinct() == 1000 }, "the first lines did not arrive")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())

	// Stopped: the application writes on; logrotate rotates twice.
	writeLog(t, log, 1000, 3000, size)
	require.NoError(t, os.Rename(log, filepath.Join(old, "app.log.1")))
	gzipFile(t, filepath.Join(old, "app.log.1"))
	writeLog(t, log, 3000, 5000, size)
	require.NoError(t, os.Rename(filepath.Join(old, "app.log.1.gz"), filepath.Join(old, "app.log.2.gz")))
	require.NoError(t, os.Rename(log, filepath.Join(old, "app.log.1")))
	gzipFile(t, filepath.Join(old, "app.log.1"))
	writeLog(t, log, 5000, 6000, size)

	p = startAgent(t, "run", "-c", cfg)
	p.waitForf(t, time.Minute, func() bool { return s.distinct() == 6000 }, func() string {
		return fmt.Sprintf("%d of 6000 lines arrived; agent:\n%s", s.distinct(), tail(p.output(), 4000))
	})
	require.Equal(t, 2.0, metric(admin, `agent_file_compressed_rotations_read_total{source="app"}`))
	require.Equal(t, 4000.0, metric(admin, `agent_file_compressed_records_total{source="app"}`))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	requireAllArrived(t, s, 6000, false)
	out := p.stderr.String()
	require.Contains(t, out, "lines recovered from a file rotated and compressed while the source was stopped")
	require.Contains(t, out, "never seen")
}

// logrotate with copytruncate, compress and delaycompress runs twice
// between two runs of `agent tail --once`: the rest of what the first run
// read is in app.log.2.gz, the version written between the rotations in
// app.log.1, which no run saw, and app.log starts again. Every line arrives
// exactly once.
func TestTailOnce_CopyTruncateDelaycompressTwiceBetweenRuns_EveryLineOnce(t *testing.T) {
	t.Parallel()
	s := newSink(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	state := filepath.Join(dir, "state")
	copytruncate := func(to string) {
		data, err := os.ReadFile(log)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to, data, 0o644))
		require.NoError(t, os.Truncate(log, 0))
	}
	writeLog(t, log, 0, 1000, 120)
	_, errOut, code := runBin(t, "tail", "--once", log, "--to", s.URL(), "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	requireAllArrived(t, s, 1000, false)

	writeLog(t, log, 1000, 2000, 120)
	copytruncate(log + ".1")
	writeLog(t, log, 2000, 3000, 120)
	require.NoError(t, os.Rename(log+".1", log+".2"))
	copytruncate(log + ".1")
	gzipFile(t, log+".2") // delaycompress: the older rotation only
	writeLog(t, log, 3000, 3500, 120)

	_, errOut, code = runBin(t, "tail", "--once", log, "--to", s.URL(), "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	requireAllArrived(t, s, 3500, false)
}
