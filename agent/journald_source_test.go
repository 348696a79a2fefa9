package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/checkpoint"
	"github.com/kplagent/agent/agent/source/journald"
	"github.com/kplagent/agent/agent/source/journald/journaldtest"
)

// journalMessages counts the MESSAGE of every record in the file output.
func journalMessages(t *testing.T, path string) map[string]int {
	t.Helper()
	out := map[string]int{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	// The output may be writing its last line: only whole lines count.
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "%s", sc.Bytes())
		out[m["MESSAGE"].(string)]++
	}
	return out
}

// The journal source through the real pipeline: it checkpoints, so the flow
// takes the direct path; the committed cursor survives a restart and the
// second run delivers exactly what came after it.
func TestAgent_JournaldSourceTakesTheDirectPathAndResumesAfterItsCursor(t *testing.T) {
	dir := t.TempDir()
	fake := journaldtest.BuildFake(t, dir)
	j := journaldtest.NewJournal(t, dir)
	t.Setenv("FAKE_JOURNAL", j.Path)
	t.Setenv("FAKE_JOURNAL_LOG", filepath.Join(dir, "starts.log"))
	j.Append(t, 200)
	outFile := filepath.Join(dir, "out", "out.ndjson")
	state := filepath.Join(dir, "state")
	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: off}
checkpoint: {interval: 50ms}
sources:
  - name: journal
    type: journald
    journald: {journalctl_path: %s, start_at: beginning, units: [app.service]}
outputs:
  - name: out
    type: file
    file: {dir: %s}
flows:
  - name: main
    sources: [journal]
    output: out
`, state, fake, filepath.Dir(outFile))), noEnv, testComponents)
	require.NoError(t, err)
	require.IsType(t, &journald.Config{}, cfg.Sources[0].Config)

	runAgent := func(until func(map[string]int) bool) *Agent {
		a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		require.Eventually(t, func() bool { return until(journalMessages(t, outFile)) }, 30*time.Second, 20*time.Millisecond)
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("the agent did not stop")
		}
		return a
	}
	all := func(n int) func(map[string]int) bool {
		return func(m map[string]int) bool { return len(m) >= n }
	}
	a := runAgent(all(200))
	require.NotNil(t, a.flows[0].flow.direct, "a journal source replays: the direct path is open")

	st, err := checkpoint.Open(filepath.Join(state, "checkpoints.json"), checkpoint.Settings{})
	require.NoError(t, err)
	e, ok := st.Get("journal", journald.FileID)
	require.NoError(t, st.Close())
	require.True(t, ok)
	require.Equal(t, journaldtest.Cursor(199), e.Cursor, "a clean stop commits everything delivered")

	j.Append(t, 50)
	runAgent(all(250))
	m := journalMessages(t, outFile)
	require.Len(t, m, 250)
	for i := range 250 {
		require.Equal(t, 1, m[journaldtest.Message(i)], "entry %d", i)
	}
}

// A missing journalctl stops the agent with an error that names it.
func TestAgent_JournaldSourceWithoutJournalctlFailsAtStart(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: off}
sources:
  - name: journal
    type: journald
    journald: {journalctl_path: %s}
outputs:
  - name: out
    type: file
    file: {dir: %s}
flows:
  - name: main
    sources: [journal]
    output: out
`, filepath.Join(dir, "state"), filepath.Join(dir, "no", "journalctl"), filepath.Join(dir, "out"))), noEnv, testComponents)
	require.NoError(t, err, "validation does no I/O: a host without journalctl validates")
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	err = a.Run(t.Context())
	require.ErrorIs(t, err, journald.ErrNoJournalctl)
	require.ErrorContains(t, err, "source journal")
}
