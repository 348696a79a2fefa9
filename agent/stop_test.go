package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lineSink is an HTTP destination that can be down (503) or up, and counts
// the deliveries of each numbered line ("line NNNNN ...").
type lineSink struct {
	*httptest.Server
	up       atomic.Bool
	failures atomic.Int64
	mu       sync.Mutex
	counts   map[int]int
}

func newLineSink(t *testing.T, up bool) *lineSink {
	t.Helper()
	s := &lineSink{counts: map[int]int{}}
	s.up.Store(up)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !s.up.Load() {
			s.failures.Add(1)
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		s.mu.Lock()
		defer s.mu.Unlock()
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "line" {
				continue
			}
			if n, err := strconv.Atoi(f[1]); err == nil {
				s.counts[n]++
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// distinct returns how many different lines arrived.
func (s *lineSink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts)
}

// missing lists the lines in [0, n) that never arrived.
func (s *lineSink) missing(n int) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for i := range n {
		if s.counts[i] == 0 {
			out = append(out, i)
		}
	}
	return out
}

// writeNumberedLog writes n lines of ~100 bytes.
func writeNumberedLog(t *testing.T, path string, n int) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "line %05d %090d\n", i, 0)
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
}

// logBuffer collects an agent's text log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the log lines containing s.
func (l *logBuffer) lines(s string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

type runningAgent struct {
	cancel context.CancelFunc
	done   chan error
	log    *logBuffer
}

func startTestAgent(t *testing.T, yaml string) *runningAgent {
	t.Helper()
	cfg, err := ParseConfig("t.yaml", []byte(yaml), noEnv, testComponents)
	require.NoError(t, err)
	lb := &logBuffer{}
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{cancel: cancel, done: make(chan error, 1), log: lb}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			buf := make([]byte, 1<<20)
			t.Errorf("Run did not return; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		}
	})
	return r
}

// stop cancels the agent and returns how long Run took to return (failing
// the test after limit).
func (r *runningAgent) stop(t *testing.T, limit time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return time.Since(start), err
	case <-time.After(limit):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		if os.Getenv("AGENT_TEST_STACKS") != "" {
			t.Log(string(buf[:n]))
		}
		t.Fatalf("Run did not return within %s of the cancel; log:\n%s", limit, r.log.String())
		return 0, nil
	}
}

const noRoomYAML = `
state_dir: %s
shutdown_timeout: %s
admin: {listen: "off"}
spool: {min_free_bytes: %s}
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
    spool_bypass: %t
    aggregation: {max_bytes: 1KiB}
    sender: {backoff_initial: 10ms, backoff_max: 200ms}
`

// noRoom is a free-disk floor no test machine reaches: the spool takes
// nothing (a state directory on a small tmpfs under the default floor).
const noRoom = "1000TiB"

// Issue 8, item 1: with a spool that cannot take a spill (its disk under
// min_free_bytes), every direct worker waited in spill for room that could
// not come, and the flow waited in Append: after the destination came back
// not one line arrived. The undelivered aggregates must stay in memory and
// be sent again.
func TestDirect_SpoolWithoutRoom_DeliversOnceTheDestinationIsBack(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	const n = 3000 // ~300 aggregates of 1 KiB: more than the direct queue holds
	writeNumberedLog(t, log, n)
	sink := newLineSink(t, false)
	r := startTestAgent(t, fmt.Sprintf(noRoomYAML, filepath.Join(dir, "state"), "1s", noRoom, log, sink.URL, true))

	require.Eventually(t, func() bool { return sink.failures.Load() >= 5 }, 20*time.Second, 5*time.Millisecond)
	sink.up.Store(true)
	ok := assertEventually(20*time.Second, func() bool { return sink.distinct() == n })
	require.True(t, ok, "after the destination came back %d of %d lines arrived; log:\n%s", sink.distinct(), n, r.log.String())
	_, err := r.stop(t, 15*time.Second)
	require.NoError(t, err)
	require.Empty(t, r.log.lines("level=ERROR"))
}

// Issue 8, item 2: destination down and a spool without room. Shutdown gave
// each queued direct aggregate its own 5 s (and the flush and the drain a
// shutdown_timeout each), logging an ERROR per aggregate. It must end
// within shutdown_timeout plus a small margin, log one summary line, and
// lose nothing: the next start delivers every line.
func TestShutdown_DownDestinationAndNoSpoolRoom_KeepsTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bypass bool
	}{{"direct path", true}, {"spool path", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "app.log")
			state := filepath.Join(dir, "state")
			const n = 3000
			writeNumberedLog(t, log, n)
			sink := newLineSink(t, false)
			const timeout = time.Second
			r := startTestAgent(t, fmt.Sprintf(noRoomYAML, state, timeout, noRoom, log, sink.URL, tc.bypass))
			if tc.bypass {
				require.Eventually(t, func() bool { return sink.failures.Load() >= 3 }, 20*time.Second, 5*time.Millisecond)
			} else {
				time.Sleep(500 * time.Millisecond) // the flow blocks on the spool: nothing is sent
			}

			took, err := r.stop(t, 60*time.Second)
			require.NoError(t, err)
			require.Less(t, took, timeout+3*time.Second, "shutdown must keep shutdown_timeout (%s) plus a small margin; log:\n%s", timeout, r.log.String())
			require.Empty(t, r.log.lines("level=ERROR"), "an undelivered record at shutdown is no error: it is read again")
			summary := r.log.lines("stopped before everything was delivered")
			require.Len(t, summary, 1, "one summary line; log:\n%s", r.log.String())
			require.Contains(t, summary[0], "app.log", "the summary names the files read again")

			// The operator makes room and the destination is back: every
			// line arrives (at least once).
			sink.up.Store(true)
			r = startTestAgent(t, fmt.Sprintf(noRoomYAML, state, timeout, "0", log, sink.URL, tc.bypass))
			ok := assertEventually(30*time.Second, func() bool { return sink.distinct() == n })
			missing := sink.missing(n)
			require.True(t, ok, "%d lines missing after the restart (first %v); log:\n%s", len(missing), missing[:min(10, len(missing))], r.log.String())
			_, err = r.stop(t, 15*time.Second)
			require.NoError(t, err)
			require.Len(t, r.log.lines("stopped; everything read was delivered"), 1, r.log.String())
		})
	}
}
