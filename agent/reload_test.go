package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/cwmetrics"
)

// reloadSink is an HTTP destination counting the lines "n<number>" it got;
// while failing is set it answers 503.
type reloadSink struct {
	*httptest.Server
	failing atomic.Bool
	delay   atomic.Int64 // each request takes this long (ns), after its body is read
	busy    atomic.Int64 // requests in progress
	mu      sync.Mutex
	got     map[int]int
	conns   atomic.Int64 // TCP connections accepted
}

func newReloadSink(t *testing.T) *reloadSink {
	s := &reloadSink{got: map[int]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.busy.Add(1)
		defer s.busy.Add(-1)
		b, _ := io.ReadAll(r.Body)
		time.Sleep(time.Duration(s.delay.Load()))
		if s.failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			if n, err := strconv.Atoi(strings.TrimPrefix(l, "n")); err == nil {
				s.got[n]++
			}
		}
		s.mu.Unlock()
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// has reports whether every line in [from, to) arrived.
func (s *reloadSink) has(from, to int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := from; i < to; i++ {
		if s.got[i] == 0 {
			return false
		}
	}
	return true
}

func (s *reloadSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func numbered(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "n%d\n", i)
	}
	return b.String()
}

func appendFile(t *testing.T, path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	_, err = f.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

type reloadHarness struct {
	t    *testing.T
	dir  string
	a    *Agent
	done chan error
}

func (h *reloadHarness) parse(body string) Config {
	cfg, err := ParseConfig("t.yaml", fmt.Appendf(nil, "state_dir: %s\nadmin: {listen: \"off\"}\nshutdown_timeout: 5s\n%s", filepath.Join(h.dir, "state"), body), noEnv, testComponents)
	require.NoError(h.t, err)
	return cfg
}

func startReloadHarness(t *testing.T, body string, stdin io.Reader) *reloadHarness {
	h := &reloadHarness{t: t, dir: t.TempDir(), done: make(chan error, 1)}
	a, err := New(h.parse(body), Settings{Components: testComponents, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Stdin: stdin})
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

func (h *reloadHarness) reload(body string) (ReloadReport, error) {
	ctx, cancel := context.WithTimeout(h.t.Context(), time.Minute)
	defer cancel()
	return h.a.Reload(ctx, h.parse(body))
}

func (h *reloadHarness) flow(name string) *flowRuntime {
	for _, fr := range h.a.runtimeFlows() {
		if fr.cfg.Name == name {
			return fr
		}
	}
	return nil
}

const fastSender = `sender: {backoff_initial: 5ms, backoff_max: 20ms}`

// Changing only a flow's output (its URL, while the old one is down) gives
// the flow a new sender on the same spool while its source keeps reading
// (a stdin stream, which a rebuild would cut): the entries the old sender
// held in its retries are sent by the new one, nothing is lost.
func TestReload_OutputChangeKeepsTheSourcesAndSendsWhatTheOldSenderHeld(t *testing.T) {
	down, up := newReloadSink(t), newReloadSink(t)
	down.failing.Store(true)
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
    %s
`, url, fastSender)
	}
	h := startReloadHarness(t, config(down.URL), pr)
	_, err := io.WriteString(pw, numbered(0, 1000))
	require.NoError(t, err)
	fr := h.flow("main")
	require.Eventually(t, func() bool { return fr.spool.Stats().Entries > 0 && fr.sender.primary.seen.failingSince.Load() != 0 },
		20*time.Second, 5*time.Millisecond, "the old sender never tried the down output")

	rep, err := h.reload(config(up.URL))
	require.NoError(t, err)
	require.Equal(t, []string{"main"}, rep.OutputsRebuilt)
	after := h.flow("main")
	require.Same(t, fr.sources[0], after.sources[0], "the stdin source was kept")
	require.Same(t, fr.spool, after.spool)
	require.NotSame(t, fr.sender, after.sender)

	_, err = io.WriteString(pw, numbered(1000, 2000))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return up.has(0, 2000) }, 20*time.Second, 10*time.Millisecond,
		"lines missing at the new URL: got %d of 2000", up.count())
	require.Eventually(t, func() bool { return after.spool.Stats().Entries == 0 }, 20*time.Second, 10*time.Millisecond)
}

// A reload lets the sends in flight finish before it replaces a sender: a
// Send cut off after the destination took its records would be sent again
// by the next sender.
func TestReload_SendsInFlightFinishBeforeTheSenderIsReplaced(t *testing.T) {
	slow, fast := newReloadSink(t), newReloadSink(t)
	slow.delay.Store(int64(300 * time.Millisecond))
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
    aggregation: {max_buffered_time: 10ms, max_records: 50}
    sender: {concurrency: 2, batch_max_records: 1}
`, url)
	}
	h := startReloadHarness(t, config(slow.URL), pr)
	_, err := io.WriteString(pw, numbered(0, 1000))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return slow.busy.Load() > 0 }, 20*time.Second, time.Millisecond)
	_, err = h.reload(config(fast.URL))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		fast.mu.Lock()
		defer fast.mu.Unlock()
		return len(slow.got)+len(fast.got) >= 1000
	}, 20*time.Second, 10*time.Millisecond)
	slow.mu.Lock()
	defer slow.mu.Unlock()
	fast.mu.Lock()
	defer fast.mu.Unlock()
	require.NotEmpty(t, slow.got, "the send in flight finished")
	for n := range slow.got {
		require.Zero(t, fast.got[n], "line %d sent to both", n)
	}
	for n := range 1000 {
		require.Positive(t, slow.got[n]+fast.got[n], "line %d lost", n)
	}
}

// A flow rebuilt around a stream takes the stream over: the stdin source
// (unchanged) keeps reading into the new flow, nothing lost. A change to
// the stdin source itself is refused (a new source cannot take over the
// stream without losing the line being read), and the pipeline goes on.
func TestReload_RebuiltFlowTakesOverItsStdinStream_AChangedStdinIsRefused(t *testing.T) {
	s := newReloadSink(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	config := func(stdin, extra string) string {
		return fmt.Sprintf(`
sources:
  - {name: in, type: stdin%s}
outputs:
  - name: web
    type: http
    http: {url: %q, encoding: text, compression: none}
flows:
  - name: main
    sources: [in]
    output: web
    aggregation: {max_buffered_time: 10ms}
%s`, stdin, s.URL, extra)
	}
	h := startReloadHarness(t, config("", ""), pr)
	fr := h.flow("main")
	_, err := io.WriteString(pw, numbered(0, 100))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 100) }, 20*time.Second, 10*time.Millisecond)

	dropSkip := "    processors: [{drop: {regex: '^skip'}}]\n"
	rep, err := h.reload(config("", dropSkip))
	require.NoError(t, err)
	require.Equal(t, []string{"main"}, rep.Rebuilt)
	re := h.flow("main")
	require.NotSame(t, fr.flow, re.flow)
	require.Same(t, fr.sources[0], re.sources[0], "the stdin source was taken over, running")
	_, err = io.WriteString(pw, numbered(100, 200)+"skip me\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 200) }, 20*time.Second, 10*time.Millisecond)

	_, err = h.reload(config(", stdin: {max_record_bytes: 1KiB}", dropSkip))
	require.ErrorContains(t, err, `its source "in" reads a stream (type stdin) and changed`)
	require.Same(t, re, h.flow("main"))
	_, err = io.WriteString(pw, numbered(200, 300))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 300) }, 20*time.Second, 10*time.Millisecond)
	text := gather(t, h.a)
	require.Contains(t, text, `agent_records_received_total{source="in"} 301`, "the skipped line was read, then dropped")
}

// A socket source whose flow is rebuilt (another source of the flow
// changed) keeps its listener and its clients' connections: a client
// connected before the reload goes on sending on its connection.
func TestReload_RebuiltFlowKeepsItsSocketListenerAndConnections(t *testing.T) {
	s := newReloadSink(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	config := func(glob string) string {
		return fmt.Sprintf(`
sources:
  - name: sock
    type: socket
    socket: {listen: "tcp://127.0.0.1:0"}
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: web
    type: http
    http: {url: %q, encoding: text, compression: none}
flows:
  - name: main
    sources: [sock, app]
    output: web
    aggregation: {max_buffered_time: 10ms}
`, glob, s.URL)
	}
	h := startReloadHarness(t, config(a), nil)
	fr := h.flow("main")
	var addr string
	require.Eventually(t, func() bool {
		if sa, ok := fr.sources[0].(interface{ Addr() net.Addr }); ok && sa.Addr() != nil {
			addr = sa.Addr().String()
		}
		return addr != ""
	}, 20*time.Second, 10*time.Millisecond)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, numbered(0, 100))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.has(0, 100) }, 20*time.Second, 10*time.Millisecond)

	appendFile(t, b, numbered(1000, 1100))
	rep, err := h.reload(config(b))
	require.NoError(t, err)
	require.Equal(t, []string{"main"}, rep.Rebuilt)
	re := h.flow("main")
	require.Same(t, fr.sources[0], re.sources[0], "the socket source was taken over, running")
	require.NotSame(t, fr.sources[1], re.sources[1], "the changed file source was built again")
	_, err = io.WriteString(conn, numbered(100, 200))
	require.NoError(t, err, "the connection was cut")
	require.Eventually(t, func() bool { return s.has(0, 200) && s.has(1000, 1100) }, 20*time.Second, 10*time.Millisecond)
	require.Contains(t, gather(t, h.a), `agent_socket_connections_total{source="sock"} 1`)
}

// An unchanged flow is left untouched (same sources, sender, spool and
// output, whose connection stays); a changed source rebuilds its flow on
// the same spool; removed flows stop and added ones start; the metrics
// registry stays consistent (no duplicate series, none of removed parts).
// A reload whose new part cannot be built changes nothing.
func TestReload_KeepsUnchangedFlowsRebuildsChangedRemovesAndAdds(t *testing.T) {
	s1, s2 := newReloadSink(t), newReloadSink(t)
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log"), filepath.Join(dir, "c.log")
	config := func(flows string) string {
		return fmt.Sprintf(`
sources:
  - name: fa
    type: file
    file: {include: [%q], start_at: beginning}
  - name: fb
    type: file
    file: {include: [%q], start_at: beginning}
  - name: fc
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: one
    type: http
    http: {url: %q, encoding: text, compression: none}
  - name: two
    type: http
    http: {url: %q, encoding: text, compression: none}
  - name: broken
    type: http
    http: {url: "https://127.0.0.1:1/", tls: {ca_file: %q}}
flows:
%s`, a, b, c, s1.URL, s2.URL, filepath.Join(dir, "missing.pem"), flows)
	}
	flow := func(name, src, out string) string {
		return fmt.Sprintf("  - {name: %s, sources: [%s], output: %s, sender: {concurrency: 1}, aggregation: {max_buffered_time: 10ms}}\n", name, src, out)
	}
	appendFile(t, a, numbered(0, 100))
	appendFile(t, b, numbered(10000, 10100))
	h := startReloadHarness(t, config(flow("keep", "fa", "one")+flow("gone", "fb", "two")), nil)
	require.Eventually(t, func() bool { return s1.has(0, 100) && s2.has(10000, 10100) }, 20*time.Second, 10*time.Millisecond)
	keep := h.flow("keep")
	conns := s1.conns.Load()
	// Status, readiness, the watchdog and scrapes run while reloads do.
	stopReading := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stopReading:
				return
			default:
			}
			_ = h.a.Status()
			_ = h.a.Alive()
			_, _ = h.a.m.reg.Gather()
			time.Sleep(time.Millisecond)
		}
	})
	defer func() { close(stopReading); readers.Wait() }()

	// A reload whose new output cannot be built: nothing changes.
	_, err := h.reload(config(flow("keep", "fa", "one") + flow("gone", "fb", "broken")))
	require.ErrorContains(t, err, "missing.pem")
	require.Same(t, keep, h.flow("keep"))
	require.NotNil(t, h.flow("gone"))
	_, err = h.a.m.reg.Gather()
	require.NoError(t, err)

	appendFile(t, c, numbered(20000, 20100))
	goneTap := h.flow("gone").tap.ended()
	rep, err := h.reload(config(flow("keep", "fa", "one") + flow("new", "fc", "two")))
	require.NoError(t, err)
	require.Equal(t, ReloadReport{Kept: []string{"keep"}, Added: []string{"new"}, Removed: []string{"gone"}}, rep)
	require.Same(t, keep, h.flow("keep"), "the unchanged flow is the same, sources, sender and all")
	require.Nil(t, h.flow("gone"))
	select {
	case <-goneTap:
	default:
		t.Fatal("agent tap of a removed flow did not end")
	}
	appendFile(t, a, numbered(100, 200))
	require.Eventually(t, func() bool { return s1.has(0, 200) && s2.has(20000, 20100) }, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, conns, s1.conns.Load(), "the unchanged flow's output reconnected")

	text := gather(t, h.a)
	require.Contains(t, text, `agent_spool_entries{flow="new"}`)
	require.NotContains(t, text, `flow="gone"`)
	require.NotContains(t, text, `source="fb"`)
	require.Contains(t, text, `agent_records_received_total{source="fa"} 200`, "a kept source's count goes on")

	// A changed source rebuilds its flow, on the same spool.
	rep, err = h.reload(config(flow("keep", "fa, fb", "one") + flow("new", "fc", "two")))
	require.NoError(t, err)
	require.Equal(t, []string{"keep"}, rep.Rebuilt)
	re := h.flow("keep")
	require.Same(t, keep.spool, re.spool)
	require.NotSame(t, keep.sources[0], re.sources[0])
	appendFile(t, a, numbered(200, 300))
	appendFile(t, b, numbered(10100, 10200))
	require.Eventually(t, func() bool { return s1.has(0, 300) && s1.has(10100, 10200) }, 20*time.Second, 10*time.Millisecond)
	text = gather(t, h.a)
	require.Contains(t, text, `agent_file_open_descriptors{source="fb"}`)
	require.Contains(t, text, `agent_records_received_total{source="fa"} 300`, "a rebuilt source's count goes on")

	// Another output for a flow: a new sender; the unused output's series
	// go. The output it now shares is built again (its connection budget
	// is the sum of its flows' concurrency): its other flow gets a new
	// sender too.
	rep, err = h.reload(config(flow("keep", "fa, fb", "one") + flow("new", "fc", "one")))
	require.NoError(t, err)
	require.Equal(t, []string{"keep", "new"}, rep.OutputsRebuilt)
	appendFile(t, c, numbered(20100, 20200))
	require.Eventually(t, func() bool { return s1.has(20100, 20200) }, 20*time.Second, 10*time.Millisecond)
	text = gather(t, h.a)
	require.Contains(t, text, `agent_flow_active_output{flow="new",output="one"} 1`)
	require.NotContains(t, text, `output="two"`)
}

func gather(t *testing.T, a *Agent) string {
	t.Helper()
	fams, err := a.m.reg.Gather()
	require.NoError(t, err)
	var b strings.Builder
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			b.WriteString(f.GetName() + "{")
			for i, l := range m.GetLabel() {
				if i > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, "%s=%q", l.GetName(), l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			fmt.Fprintf(&b, "} %v\n", v)
		}
	}
	return b.String()
}

// Settings a running process cannot change keep their running values and
// are named; the others apply.
func TestReload_SettingsThatNeedARestartKeepTheirRunningValues(t *testing.T) {
	old := DefaultConfig()
	old.StateDir, old.Admin.Listen, old.Spool.Dir = "/var/lib/agent", "127.0.0.1:7219", "/var/lib/agent/spool"
	next := old
	next.StateDir, next.Admin.Listen, next.Spool.Dir = "/srv/agent", "0.0.0.0:7219", "/srv/agent/spool"
	next.Log.Level = "debug"
	next.ShutdownTimeout = old.ShutdownTimeout + time.Second
	next.Admin.NotReadyAfter = time.Hour
	got, names := keepRestartSettings(old, next)
	require.Equal(t, []string{"state_dir", "spool", "admin.listen", "log"}, names)
	require.Equal(t, old.StateDir, got.StateDir)
	require.Equal(t, old.Spool, got.Spool)
	require.Equal(t, old.Admin.Listen, got.Admin.Listen)
	require.Equal(t, old.Log, got.Log)
	require.Equal(t, next.ShutdownTimeout, got.ShutdownTimeout, "applies live")
	require.Equal(t, time.Hour, got.Admin.NotReadyAfter, "applies live")
	_, names = keepRestartSettings(old, old)
	require.Empty(t, names)
}

// The CloudWatch publisher is started once: a reload that changes
// metrics says it needs a restart (before, it answered "reloaded" and the
// running publisher went on with the old values).
func TestReload_CloudWatchChangesNeedARestart(t *testing.T) {
	old := DefaultConfig()
	next := old
	next.DeadLetter.MaxFiles = old.DeadLetter.MaxFiles + 1 // applies live
	next.Metrics.CloudWatch = &cwmetrics.Config{Enabled: true, Namespace: "QA"}
	got, names := keepRestartSettings(old, next)
	require.Equal(t, []string{"metrics"}, names)
	require.Nil(t, got.Metrics.CloudWatch)
	require.Equal(t, next.DeadLetter, got.DeadLetter)

	old.Metrics.CloudWatch = &cwmetrics.Config{Enabled: true, Namespace: "QA"}
	next = old
	next.Metrics.CloudWatch = &cwmetrics.Config{Enabled: true, Namespace: "QA"} // equal, not the same pointer
	_, names = keepRestartSettings(old, next)
	require.Empty(t, names)
}

// A stop of the agent while a reload waits for a removed flow to deliver
// (its destination down) ends that wait: the reload's stop and the
// shutdown that follows do not add up to twice shutdown_timeout.
func TestReload_StopDuringAReloadKeepsOneDeadline(t *testing.T) {
	sink := newReloadSink(t)
	sink.failing.Store(true)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	config := func(flows string) Config {
		cfg, err := ParseConfig("t.yaml", fmt.Appendf(nil, `state_dir: %s
admin: {listen: "off"}
shutdown_timeout: 3s
sources:
  - {name: fa, type: file, file: {include: [%q], start_at: beginning}}
  - {name: fb, type: file, file: {include: [%q], start_at: beginning}}
outputs:
  - {name: down, type: http, http: {url: %q, encoding: text, compression: none}}
flows:
%s`, filepath.Join(dir, "state"), a, b, sink.URL, flows), noEnv, testComponents)
		require.NoError(t, err)
		return cfg
	}
	flow := func(name, src string) string {
		return fmt.Sprintf("  - {name: %s, sources: [%s], output: down, %s, aggregation: {max_buffered_time: 10ms}}\n", name, src, fastSender)
	}
	appendFile(t, a, numbered(0, 100))
	appendFile(t, b, numbered(1000, 1100))
	ag, err := New(config(flow("keep", "fa")+flow("gone", "fb")), Settings{Components: testComponents, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	require.Eventually(t, func() bool { return ag.state.Load() == stateRunning }, 20*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return sink.busy.Load() > 0 || sink.conns.Load() > 0 }, 20*time.Second, time.Millisecond, "the flows send (and fail)")

	reloaded := make(chan error, 1)
	go func() {
		_, err := ag.Reload(t.Context(), config(flow("keep", "fa"))) // "gone" is removed: up to 3s to deliver
		reloaded <- err
	}()
	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	took := time.Since(stopped)
	<-reloaded
	require.Less(t, took, 3*time.Second+2*time.Second, "the stop took %s: shutdown_timeout is 3s", took)
}

// A reload that rebuilds an output keeps the new output's own metrics on
// /metrics. Closing the replaced output unregistered its collectors a
// second time after the new output had registered its own under the same
// names, and the registry (which unregisters by name and labels) removed
// the new ones: agent_kinesis_* and agent_output_http_* were gone after a
// reload changing the stream or the URL.
func TestReload_RebuiltOutputKeepsItsMetrics(t *testing.T) {
	one, two := newReloadSink(t), newReloadSink(t)
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
    %s
`, url, fastSender)
	}
	h := startReloadHarness(t, config(one.URL), pr)
	const series = `agent_output_http_request_bytes_limit{output="web"}`
	require.Contains(t, gather(t, h.a), series)

	rep, err := h.reload(config(two.URL))
	require.NoError(t, err)
	require.Equal(t, []string{"main"}, rep.OutputsRebuilt)
	_, err = io.WriteString(pw, numbered(0, 10))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return two.has(0, 10) }, 20*time.Second, 10*time.Millisecond)
	require.Contains(t, gather(t, h.a), series, "the rebuilt output's metrics are still served")
}
