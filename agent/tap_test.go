package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A tap stream on an endpoint shared across reloads (agent run's) ends when
// the pipeline it taps stops: the stopped pipeline's flows take no more
// records, and a client left waiting would see nothing for ever.
func TestTap_StreamEndsWhenItsPipelineStops(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(logPath, nil, 0o600))
	srv := newSinkServer(t)

	ad, err := StartAdmin("127.0.0.1:0", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer ad.Close()
	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: sink
    type: http
    http: {url: %q, compression: none}
flows:
  - name: main
    sources: [app]
    output: sink
`, filepath.Join(dir, "state"), logPath, srv)), noEnv, testComponents)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler), Admin: ad})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	// Open the tap once the pipeline is attached, and see a record through it.
	var resp *http.Response
	require.Eventually(t, func() bool {
		r, err := http.Get("http://" + ad.Addr() + "/tap?flow=main&rate=1000")
		if err != nil {
			return false
		}
		if r.StatusCode != http.StatusOK {
			r.Body.Close()
			return false
		}
		resp = r
		return true
	}, 20*time.Second, 10*time.Millisecond)
	defer resp.Body.Close()
	lines := make(chan string, 64)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // the test reads only the first
			}
		}
	}()
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	deadline := time.After(20 * time.Second)
	for seen := false; !seen; {
		_, err := f.WriteString("tapped line\n")
		require.NoError(t, err)
		select {
		case l := <-lines:
			require.Contains(t, l, "tapped line")
			seen = true
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("no tapped record in 20s")
		}
	}

	// The pipeline stops (a reload's first half); the endpoint stays up.
	cancel()
	require.NoError(t, <-done)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the tap stream of a stopped pipeline is still open")
	}
	code, _ := get(t, "http://"+ad.Addr()+"/healthz")
	require.Equal(t, http.StatusOK, code, "the shared endpoint outlives the pipeline")
}

// newSinkServer is an HTTP destination that takes every request.
func newSinkServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Every answer of the admin endpoint carries AdminHeader, by which the
// commands tell an agent from another program on the port: the 503 of a
// pipeline not yet attached, an unknown path's 404 and a refused reload.
func TestAdmin_EveryAnswerIsMarked(t *testing.T) {
	ad, err := StartAdmin("127.0.0.1:0", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer ad.Close()
	ad.SetReload(func() (string, error) { return "", errors.New("bad config") })
	base := "http://" + ad.Addr()
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/status", http.StatusServiceUnavailable},
		{http.MethodGet, "/healthz", http.StatusOK},
		{http.MethodGet, "/nothing", http.StatusNotFound},
		{http.MethodPost, "/reload", http.StatusUnprocessableEntity},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, base+tc.path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, tc.code, resp.StatusCode, tc.path)
		require.Equal(t, "1", resp.Header.Get(AdminHeader), tc.path)
	}
}
