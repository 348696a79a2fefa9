package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source/stdin"
)

func TestAgent_StdinSourceTakesTheSpoolPathAndDeliversEverythingInOnceMode(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: off}
sources:
  - name: in
    type: stdin
    stdin: {max_record_bytes: 16}
outputs:
  - name: out
    type: stdout
    stdout: {encoding: text}
flows:
  - name: main
    sources: [in]
    output: out
`, filepath.Join(dir, "state"))), noEnv, testComponents)
	require.NoError(t, err)
	require.IsType(t, &stdin.Config{}, cfg.Sources[0].Config)

	var lines []string
	for i := range 5000 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	in := strings.Join(lines, "\n") + "\n" + strings.Repeat("y", 40) + "\nlast"
	var out bytes.Buffer
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler), Once: true, Stdin: strings.NewReader(in), Stdout: &out})
	require.NoError(t, err)
	require.NoError(t, a.Run(t.Context()))

	// text: the record's own line break is written as \n.
	want := strings.Join(lines, "\n") + "\n" + strings.Repeat("y", 15) + "\\n\n" + "last\n"
	require.Equal(t, want, out.String())
	require.Nil(t, a.flows[0].flow.direct, "a stream cannot replay: no direct path")
	s := a.Snapshot()
	require.Equal(t, int64(5002), s.RecordsRead)
	require.Equal(t, int64(5002), s.RecordsSent)
}

func TestConfig_StdinSourceIsValidated(t *testing.T) {
	_, err := ParseConfig("t.yaml", []byte(`
state_dir: /tmp/x
sources:
  - name: in
    type: stdin
    stdin: {max_record_bytes: 0}
outputs:
  - name: out
    type: stdout
flows:
  - name: main
    sources: [in]
    output: out
`), noEnv, testComponents)
	require.ErrorContains(t, err, "t.yaml:6: sources[0].stdin.max_record_bytes: must be between 1 and")
}
