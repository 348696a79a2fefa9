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
