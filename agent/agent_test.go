package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/testport"
	"github.com/stretchr/testify/require"
)

func freePort(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAgent_RunShipsAFileAndServesAdminEndpoints(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	var lines []string
	for i := range 1000 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	require.NoError(t, os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o600))

	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		received.Add(int64(strings.Count(string(b), "\n")))
	}))
	defer srv.Close()

	admin := freePort(t)
	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: sink
    type: http
    http: {url: %q, compression: none, encoding: text}
flows:
  - name: main
    sources: [app]
    output: sink
`, filepath.Join(dir, "state"), admin, log, srv.URL)), noEnv, testComponents)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	require.Eventually(t, func() bool { return received.Load() == 1000 }, 20*time.Second, 10*time.Millisecond)
	code, _ := get(t, "http://"+admin+"/healthz")
	require.Equal(t, 200, code)
	code, _ = get(t, "http://"+admin+"/readyz")
	require.Equal(t, 200, code)
	code, body := get(t, "http://"+admin+"/metrics")
	require.Equal(t, 200, code)
	for _, want := range []string{
		`agent_records_received_total{source="app"} 1000`,
		`agent_output_records_sent_total{output="sink"} 1000`,
		`agent_spool_entries{flow="main"}`,
		`agent_checkpoint_lag_bytes{file="` + log + `",source="app"}`,
		`agent_output_send_duration_seconds_bucket{output="sink"`,
	} {
		require.Contains(t, body, want)
	}
	s := a.Snapshot()
	require.Equal(t, int64(1000), s.RecordsRead)

	cancel()
	require.NoError(t, <-done)
	// Positions were saved: a second run ships nothing again.
	a2, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler), Once: true})
	require.NoError(t, err)
	require.NoError(t, a2.Run(t.Context()))
	require.Equal(t, int64(1000), received.Load())
}
