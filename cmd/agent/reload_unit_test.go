package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent"
)

// A stdin source's stream cannot be handed from one pipeline to the next:
// the stopped source's pending read takes the next chunk of the pipe and
// its begun line is dropped. A reload of such a pipeline is refused (the
// running one goes on) rather than losing records.
func TestReload_RefusedWhileAStdinSourceRuns(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, `
state_dir: %s
admin: {listen: "off"}
sources:
  - name: in
    type: stdin
outputs:
  - name: out
    type: stdout
flows:
  - name: main
    sources: [in]
    output: out
`, filepath.Join(dir, "state")), 0o600))
	cfg, err := agent.LoadConfig(path, components())
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	r := &reloader{log: log, path: path, cfg: cfg, settings: func() agent.Settings {
		return agent.Settings{Logger: log, Components: components()}
	}}
	_, err = r.prepare()
	require.ErrorContains(t, err, `source "in" reads a stream (type stdin)`)
}

// A reload asked for while another runs (the loop is not receiving: it
// stops the old pipeline) waits and runs next, reading the file as it is
// then; it used to be dropped, silently for a SIGHUP, and an edit made
// during a reload was never applied.
func TestReloadQueue_ARequestDuringAReloadRunsNext(t *testing.T) {
	q := newReloadQueue()
	reply := q.request() // nobody receives: a reload is running
	select {
	case err := <-reply:
		t.Fatalf("refused while a reload runs: %v", err)
	default:
	}
	again := q.request()
	require.ErrorContains(t, <-again, "already waiting", "more requests are the same request")

	got := <-q.ch // the loop takes it once the running reload is done
	got <- nil
	require.NoError(t, <-reply)

	// Stopping answers a request still queued.
	reply = q.request()
	q.refuseQueued()
	require.ErrorContains(t, <-reply, "stopping")
}
