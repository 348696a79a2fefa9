package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/testport"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/outputs"
)

// hangSink is an HTTP destination that takes the connection and the body
// and does not answer until released (or the client gives up).
type hangSink struct {
	*httptest.Server
	hung    atomic.Int64 // requests waiting now
	release chan struct{}
	once    sync.Once
}

func newHangSink(t *testing.T) *hangSink {
	s := &hangSink{release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.hung.Add(1)
		defer s.hung.Add(-1)
		select {
		case <-s.release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { s.free(); s.Close() })
	return s
}

// free makes it answer (200) from now on.
func (s *hangSink) free() { s.once.Do(func() { close(s.release) }) }

// lockedBuffer is a log destination safe for the agent's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLoggedHarness is startReloadHarness with the agent's log in logs.
func startLoggedHarness(t *testing.T, body string, stdin io.Reader, logs io.Writer) *reloadHarness {
	h := &reloadHarness{t: t, dir: t.TempDir(), done: make(chan error, 1)}
	a, err := New(h.parse(body), Settings{Components: testComponents, Logger: slog.New(slog.NewTextHandler(logs, nil)), Stdin: stdin})
	require.NoError(t, err)
	h.a = a
	ctx, cancel := context.WithCancel(t.Context())
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-h.done)
	})
	require.Eventually(t, func() bool { return a.state.Load() == stateRunning }, 20*time.Second, time.Millisecond)
	return h
}

func outputStatus(t *testing.T, a *Agent, name string) OutputStatus {
	t.Helper()
	for _, o := range a.Status().Outputs {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("no output %s in status", name)
	return OutputStatus{}
}

// gauge reads one series of the agent's metrics ("name{labels}").
func gauge(t *testing.T, a *Agent, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(gather(t, a))
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// A destination that takes the connection and never answers: status shows
// the output stalled (not ok or idle) once its oldest send has waited half
// its timeout, the metrics give the send's age, and the log says so once
// (rate-limited), before the timeout ends the send. Once the destination
// answers, the output is ok and nothing is in flight.
func TestStatus_OutputStalledWhileItsDestinationDoesNotAnswer(t *testing.T) {
	sink := newHangSink(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	var logs lockedBuffer
	h := startLoggedHarness(t, fmt.Sprintf(`
sources:
  - {name: in, type: stdin}
outputs:
  - name: web
    type: http
    http: {url: %q, encoding: text, compression: none, timeout: 3s}
flows:
  - name: main
    sources: [in]
    output: web
    aggregation: {max_buffered_time: 10ms}
    %s
`, sink.URL, fastSender), pr, &logs)
	require.Equal(t, OutputIdle, outputStatus(t, h.a, "web").State)
	require.Zero(t, gauge(t, h.a, `agent_output_sends_in_flight{output="web"}`))
	_, err := io.WriteString(pw, numbered(0, 100))
	require.NoError(t, err)

	var st OutputStatus
	require.Eventually(t, func() bool {
		st = outputStatus(t, h.a, "web")
		return st.State == OutputStalled
	}, 20*time.Second, 10*time.Millisecond, "status never showed the output stalled: %+v", st)
	require.Positive(t, st.SendsInFlight)
	require.Greater(t, st.SendingForSeconds, 1.5, "stalled after half the 3s timeout")
	require.NotEmpty(t, st.SendingFor)
	require.Eventually(t, func() bool { return gauge(t, h.a, `agent_output_oldest_send_age_seconds{output="web"}`) > 1.5 },
		20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "has not answered a send for long") }, 20*time.Second, 10*time.Millisecond)
	// Timed out and tried again, stalled again: told once a minute.
	require.Eventually(t, func() bool { return outputStatus(t, h.a, "web").State == OutputRetrying }, 20*time.Second, 10*time.Millisecond)
	// Stalled for over a second (the sampler's period) past the threshold:
	// sampled at least once while stalled again.
	require.Eventually(t, func() bool {
		st := outputStatus(t, h.a, "web")
		return st.State == OutputStalled && st.SendingForSeconds > 2.6
	}, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, strings.Count(logs.String(), "has not answered a send for long"), logs.String())
	require.Regexp(t, `level=WARN msg=".*has not answered a send for long.*" component=sender output=web waiting=\d+s sends_in_flight=\d+ timeout=3s`, logs.String())

	sink.free()
	require.Eventually(t, func() bool {
		st = outputStatus(t, h.a, "web")
		return st.State == OutputOK && st.SendsInFlight == 0 && st.SendingFor == "" && st.RecordsSent == 100
	}, 20*time.Second, 10*time.Millisecond, "%+v", st)
	require.Zero(t, gauge(t, h.a, `agent_output_oldest_send_age_seconds{output="web"}`))
}

// An output whose first send waits for the destination's answer, for less
// than the stalled threshold (here 10 s, half a 20 s timeout), is sending,
// not idle: idle says nothing was ever sent.
func TestStatus_OutputSendingWhileItsFirstSendWaits(t *testing.T) {
	sink := newHangSink(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	h := startLoggedHarness(t, fmt.Sprintf(`
sources:
  - {name: in, type: stdin}
outputs:
  - name: web
    type: http
    http: {url: %q, encoding: text, compression: none, timeout: 20s}
flows:
  - name: main
    sources: [in]
    output: web
    aggregation: {max_buffered_time: 10ms}
    %s
`, sink.URL, fastSender), pr, io.Discard)
	require.Equal(t, OutputIdle, outputStatus(t, h.a, "web").State, "nothing sent yet")
	_, err := io.WriteString(pw, numbered(0, 10))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sink.hung.Load() > 0 }, 20*time.Second, 10*time.Millisecond)

	st := outputStatus(t, h.a, "web")
	require.Equal(t, OutputSending, st.State, "%+v", st)
	require.Positive(t, st.SendsInFlight)
	require.Less(t, st.SendingForSeconds, 10.0, "not yet stalled")

	sink.free()
	require.Eventually(t, func() bool {
		st = outputStatus(t, h.a, "web")
		return st.State == OutputOK && st.SendsInFlight == 0 && st.RecordsSent == 10
	}, 20*time.Second, 10*time.Millisecond, "%+v", st)
}

type timeoutOutput struct {
	namedOutput
	d time.Duration
}

func (o timeoutOutput) SendTimeout() time.Duration { return o.d }

var _ outputs.SendTimeouter = timeoutOutput{}

func TestStallAfter_HalfTheOutputsTimeoutAtMost10s(t *testing.T) {
	for _, tc := range []struct {
		out  outputs.Output
		want time.Duration
	}{
		{namedOutput("no timeout of its own"), 10 * time.Second},
		{timeoutOutput{"short", 3 * time.Second}, 1500 * time.Millisecond},
		{timeoutOutput{"default", 30 * time.Second}, 10 * time.Second},
		{timeoutOutput{"unset", 0}, 10 * time.Second},
	} {
		require.Equal(t, tc.want, stallAfter(tc.out), tc.out.Name())
	}
}

// While a reload is applied (here it waits for a send in flight to finish
// before it replaces the sender), status says reloading and for how long;
// the pipeline stays ready. After it, running again.
func TestStatus_ReloadingWhileAReloadWaitsForASendInFlight(t *testing.T) {
	slow, next := newHangSink(t), newReloadSink(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	config := func(url string) string {
		return fmt.Sprintf(`
sources:
  - {name: in, type: stdin}
outputs:
  - name: web
    type: http
    http: {url: %q, encoding: text, compression: none}
flows:
  - name: main
    sources: [in]
    output: web
    aggregation: {max_buffered_time: 10ms}
`, url)
	}
	h := startReloadHarness(t, config(slow.URL), pr)
	require.Equal(t, "running", h.a.Status().State)
	_, err := io.WriteString(pw, numbered(0, 100))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return slow.hung.Load() > 0 }, 20*time.Second, time.Millisecond)

	done := make(chan error, 1)
	go func() {
		_, err := h.reload(config(next.URL))
		done <- err
	}()
	var st Status
	require.Eventually(t, func() bool { st = h.a.Status(); return st.State == StateReloading && st.ReloadingFor != "" },
		20*time.Second, time.Millisecond, "status never said reloading: %+v", st)
	require.True(t, st.Ready, "a reload keeps the pipeline ready")
	select {
	case err := <-done:
		t.Fatalf("the reload did not wait for the send in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	slow.free()
	require.NoError(t, <-done)
	st = h.a.Status()
	require.Equal(t, "running", st.State)
	require.Empty(t, st.ReloadingFor)
}

// stalledSince: a send in flight past the threshold, or sends that timed
// out since the last answer (between two attempts none is in flight).
func TestSending_StalledSinceCountsAcrossTimedOutSends(t *testing.T) {
	now := time.Unix(1000, 0)
	at := func(sec int64) int64 { return time.Unix(sec, 0).UnixNano() }
	for _, tc := range []struct {
		name string
		s    sending
		want int64
	}{
		{"nothing in flight, answered", sending{stall: 5 * time.Second}, 0},
		{"in flight under the threshold", sending{n: 1, since: at(998), stall: 5 * time.Second}, 0},
		{"in flight past the threshold", sending{n: 1, since: at(990), stall: 5 * time.Second}, at(990)},
		{"between attempts after a timeout", sending{stall: 5 * time.Second, noAnswer: at(970)}, at(970)},
		{"retry in flight after a timeout", sending{n: 1, since: at(998), stall: 5 * time.Second, noAnswer: at(970)}, at(970)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.s.stalledSince(now))
		})
	}
	require.True(t, timedOut(fmt.Errorf("http: %w", context.DeadlineExceeded)))
	require.True(t, timedOut(&net.OpError{Op: "read", Err: timeoutErr{}}))
	require.False(t, timedOut(errors.New("http: 503 Service Unavailable")))
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

// A Kafka output whose broker is down from the start: its sends wait (the
// producer dials again and again) and the stall warning says why (the
// output's WaitCause) rather than only that the destination has not
// answered, well before the send timeout fails the records with the cause.
func TestStatus_StallWarningSaysWhyTheDestinationDoesNotAnswer(t *testing.T) {
	addr := testport.Addr(t) // nothing listens there
	pr, pw := io.Pipe()
	defer pw.Close()
	var logs lockedBuffer
	startLoggedHarness(t, fmt.Sprintf(`
sources:
  - {name: in, type: stdin}
outputs:
  - name: bus
    type: kafka
    kafka: {brokers: [%q], topic: logs, send_timeout: 6s}
flows:
  - name: main
    sources: [in]
    output: bus
    aggregation: {max_buffered_time: 10ms}
    %s
`, addr, fastSender), pr, &logs)
	_, err := io.WriteString(pw, numbered(0, 10))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "has not answered a send for long") },
		30*time.Second, 10*time.Millisecond)
	require.Regexp(t, `msg=".*has not answered a send for long.*" .*cause="kafka: broker `+regexp.QuoteMeta(addr)+` unreachable: dial tcp `+
		regexp.QuoteMeta(addr)+`: connect: connection refused"`, logs.String())
	require.NotContains(t, logs.String(), "records not acknowledged", "the send timeout has not ended the send yet")
}
