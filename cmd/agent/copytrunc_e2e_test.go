package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// logrotate's copytruncate between two runs of `agent tail --once`: the
// lines written after the first run are only in the copy (app.log.1) when
// the second run starts, and app.log starts again with new lines. Every
// line arrives at the sink exactly once; a compressed older rotation next
// to it is not read.
func TestTailOnce_CopyTruncateBetweenRuns_EveryLineOnce(t *testing.T) {
	t.Parallel()
	s := newSink(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	state := filepath.Join(dir, "state")
	writeLog(t, log, 0, 100, 120)
	_, errOut, code := runBin(t, "tail", "--once", log, "--to", s.URL(), "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	requireAllArrived(t, s, 100, false)

	writeLog(t, log, 100, 200, 120)
	// cp app.log app.log.1 && : > app.log, while no agent runs; then the
	// application writes on.
	data, err := os.ReadFile(log)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(log+".1", data, 0o644))
	require.NoError(t, os.WriteFile(log+".2.gz", data, 0o644)) // plain bytes under a .gz name: never read
	require.NoError(t, os.Truncate(log, 0))
	writeLog(t, log, 200, 250, 120)

	_, errOut, code = runBin(t, "tail", "--once", log, "--to", s.URL(), "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	requireAllArrived(t, s, 250, false)
}
