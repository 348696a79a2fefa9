package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Regression: the timer goroutine flushes aged aggregates with timerCtx, which
// shutdown cancels only after flushing, syncing and draining. When the spool
// is full (when_full: block) and the destination is down, flushOlder blocks
// in spool.Append while holding flow.mu; shutdown then waits forever for
// flow.mu (srcWG.Wait / flushAll). SIGTERM never makes Run return.
func TestShutdown_FullSpoolAndDownDestinationStillReturns(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, "line %05d %090d\n", i, 0)
	}
	require.NoError(t, os.WriteFile(log, []byte(b.String()), 0o600))

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer srv.Close()

	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
shutdown_timeout: 500ms
admin: {listen: "off"}
spool: {segment_bytes: 4KiB, max_bytes: 8KiB, min_free_bytes: 0, when_full: block}
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
    spool_bypass: false
    aggregation: {max_bytes: 1KiB}
`, filepath.Join(dir, "state"), log, srv.URL)), noEnv, testComponents)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	time.Sleep(2 * time.Second) // the spool fills; sources and timers block on it
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		if os.Getenv("AGENT_TEST_STACKS") != "" {
			t.Log(string(buf[:n]))
		}
		t.Fatal("Run did not return 10s after cancel (shutdown_timeout 500ms): shutdown is stuck behind flow.mu")
	}
}
