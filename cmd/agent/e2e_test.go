package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/testport"
	"github.com/stretchr/testify/require"
)

// The end-to-end tests run the real agent binary (built once in TestMain,
// with the race detector when the tests run with -race) against a real HTTP
// server.

var agentBin string

func TestMain(m *testing.M) {
	if path := os.Getenv(unixWriteEnv); path != "" { // a client run as another user
		os.Exit(unixWrite(path))
	}
	dir, err := os.MkdirTemp("", "agent-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "agent")
	args := []string{"build", "-o", agentBin}
	if raceEnabled {
		args = append(args, "-race")
		raceNoExitSleep()
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the agent:", err)
		os.Exit(1)
	}
	flag.Parse()
	parallelAtLeast(4)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// parallelAtLeast raises go test's -parallel to n when it was not given:
// its default, GOMAXPROCS, is 2 on a 2-core machine, and the tests of this
// package mostly wait (for agents to start and exit, for outages and
// backoffs to end), so two at a time left the cores idle most of the run.
func parallelAtLeast(n int) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if f := flag.Lookup("test.parallel"); !set && f != nil {
		if cur, err := strconv.Atoi(f.Value.String()); err == nil && cur < n {
			_ = f.Value.Set(strconv.Itoa(n))
		}
	}
}

// raceNoExitSleep sets GORACE's atexit_sleep_ms to 0 for the agents (and
// other race-built programs) the tests start, unless GORACE already sets it.
// A race-built program sleeps that long (1 s by default) in every exit with
// status 0 while goroutines other than main remain, in case one of them
// races in that second: hundreds of agent runs spent minutes of the
// package's time in it. The race detector still checks every access of the
// whole run, and a race found makes the agent exit 66 as before.
func raceNoExitSleep() {
	v := os.Getenv("GORACE")
	if strings.Contains(v, "atexit_sleep_ms") {
		return
	}
	os.Setenv("GORACE", strings.TrimSpace(v+" atexit_sleep_ms=0"))
}

// writeLog writes lines [from, to) of ~size bytes to path (appending).
func writeLog(t *testing.T, path string, from, to, size int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	w := bufio.NewWriterSize(f, 1<<20)
	buf := make([]byte, 0, size+16)
	for i := from; i < to; i++ {
		buf = numberedLine(buf[:0], i, size)
		_, err := w.Write(buf)
		require.NoError(t, err)
	}
	require.NoError(t, w.Flush())
	require.NoError(t, f.Close())
}

type agentProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer // read it after the exit; output() while running
	sw     *syncWriter
	done   chan error
}

// output is what the agent wrote so far (safe while it runs).
func (p *agentProc) output() string {
	p.sw.mu.Lock()
	defer p.sw.mu.Unlock()
	return p.stderr.String()
}

// agentCmd is exec.Command(agentBin, args...) for an agent that dies with
// the test binary: one that ends abnormally (a timeout, a panic, FailNow
// from another goroutine) would otherwise leave the agents of the tests
// still running, retrying for hours and loading the machine.
func agentCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(agentBin, args...)
	cmd.SysProcAttr = childAttr()
	return cmd
}

func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	cmd := agentCmd(args...)
	var stderr bytes.Buffer
	sw := &syncWriter{w: &stderr}
	cmd.Stderr = sw
	cmd.Stdout = sw
	require.NoError(t, cmd.Start())
	p := &agentProc{cmd: cmd, stderr: &stderr, sw: sw, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (p *agentProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT) // dump goroutines into stderr
		time.Sleep(time.Second)
		t.Fatalf("agent did not exit within %s; stderr:\n%s", timeout, tail(p.stderr.String(), 8000))
		return -1
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func requireAllArrived(t *testing.T, s *sink, n int, allowDups bool) {
	t.Helper()
	missing, dups, bad := s.check(n)
	require.Zero(t, bad, "lines the test never wrote arrived")
	require.Empty(t, missing, "%d of %d lines missing (first: %v)", len(missing), n, missing[:min(len(missing), 10)])
	if !allowDups {
		require.Zero(t, dups, "duplicates on a clean run")
	}
	t.Logf("%d lines arrived, %d duplicates, %d requests", n, dups, s.requests.Load())
}

func TestTailOnce_MillionLinesArriveExactly(t *testing.T) {
	t.Parallel()
	const n = 1_000_000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 120)
	s := newSink(t)
	p := startAgent(t, "tail", log, "--once", "--to", s.URL(), "--state-dir", filepath.Join(dir, "state"), "--gzip=false")
	require.Equal(t, 0, p.wait(t, 3*time.Minute), p.stderr.String())
	requireAllArrived(t, s, n, false)
}

func TestTailOnce_Flaky503And429WithRetryAfter_AllLinesArrive(t *testing.T) {
	t.Parallel()
	const n = 100_000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 100)
	s := newSink(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	throttled := 0
	respond := func(n int64, w http.ResponseWriter) bool {
		mu.Lock()
		defer mu.Unlock()
		switch r := rng.Float64(); {
		case n == 2: // at least one throttle, whatever the random draws
			throttled++
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		case r < 0.30:
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		case r < 0.40:
			throttled++
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	}
	s.respond.Store(&respond)
	p := startAgent(t, "tail", log, "--once", "--to", s.URL(), "--state-dir", filepath.Join(dir, "state"))
	require.Equal(t, 0, p.wait(t, 3*time.Minute), p.stderr.String())
	requireAllArrived(t, s, n, true)
	require.Positive(t, throttled)
}

func TestTail_DestinationDown30s_BacklogSpooledThenDelivered(t *testing.T) {
	t.Parallel()
	const n = 200_000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	// All of it before the start: --once ends at the end of the file, and
	// a writer still appending (this test once wrote the second half
	// while the agent ran) could be overtaken by the reader under load,
	// which then ended the run short of n.
	writeLog(t, log, 0, n, 100)
	s := newSink(t)
	s.stop()
	down := time.Now()
	admin := freeAddr(t)
	p := startAgent(t, "tail", log, "--once", "--to", s.URL(), "--state-dir", filepath.Join(dir, "state"), "--admin", admin)
	// While the destination is down, everything read goes to the spool.
	var entries, received float64
	p.waitForf(t, 2*time.Minute, func() bool {
		entries, received = metric(admin, "agent_spool_entries"), metric(admin, "agent_records_received_total")
		return entries > 0 && received >= n
	}, func() string {
		return fmt.Sprintf("want spool entries and %d records read; the last poll found %v entries, %v read (-1: admin unreachable)", n, entries, received)
	})
	// Down for 30 s counted from the stop, not 30 s more after the backlog
	// was read: the agent retries from its first send, so by then its
	// backoff (full jitter, doubling from 100ms) is already tens of seconds
	// either way. At least 5 s with all of it spooled.
	time.Sleep(max(time.Until(down.Add(30*time.Second)), 5*time.Second))
	require.Zero(t, s.distinct(), "nothing can arrive while the destination is down")
	require.Positive(t, metric(admin, "agent_spool_bytes"))
	s.start()
	require.Equal(t, 0, p.wait(t, 3*time.Minute), p.stderr.String())
	requireAllArrived(t, s, n, true)
}

func TestTail_Kill9FiveTimesWhileShipping_NoLineMissing(t *testing.T) {
	t.Parallel()
	kill9WhileShipping(t, 300_000, 5)
}

// Through the spool (spool_bypass: false): every aggregate goes through the
// spool's write-behind, whose stage a kill -9 loses; the file checkpoints
// never covered it, so those lines are read again.
func TestTail_Kill9WhileShippingThroughTheSpool_NoLineMissing(t *testing.T) {
	t.Parallel()
	kill9WhileShipping(t, 200_000, 4, "--spool-bypass=false")
}

func kill9WhileShipping(t *testing.T, n, rounds int, args ...string) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	state := filepath.Join(dir, "state")
	writeLog(t, log, 0, n/3, 100)
	s := newSink(t)
	// Slow the destination a little so kills land mid-flight.
	slow := func(_ int64, w http.ResponseWriter) bool { time.Sleep(2 * time.Millisecond); return false }
	s.respond.Store(&slow)
	written := n / 3
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < rounds; round++ {
		p := startAgent(t, append([]string{"tail", log, "--to", s.URL(), "--state-dir", state, "--sync", "interval"}, args...)...)
		// The log keeps growing while the agent runs and dies.
		next := written + (n-n/3)/rounds
		if round == rounds-1 {
			next = n
		}
		writeLog(t, log, written, next, 100)
		written = next
		time.Sleep(time.Duration(300+rng.IntN(2500)) * time.Millisecond)
		require.NoError(t, p.cmd.Process.Kill()) // SIGKILL
		<-p.done
	}
	require.Equal(t, n, written)
	p := startAgent(t, append([]string{"tail", log, "--once", "--to", s.URL(), "--state-dir", state}, args...)...)
	require.Equal(t, 0, p.wait(t, 3*time.Minute), p.stderr.String())
	requireAllArrived(t, s, n, true)
}

func TestTail_SpoolFullBlocks_ReadingPausesMemoryFlatNothingLost(t *testing.T) {
	t.Parallel()
	const n = 400_000 // ~40 MB of log against a 4 MiB spool
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 100)
	cfg := filepath.Join(dir, "agent.yaml")
	s := newSink(t)
	s.stop()
	admin := freeAddr(t)
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
spool: {max_bytes: 4MiB, segment_bytes: 1MiB, when_full: block}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: sink
    type: http
    http: {url: %q}
flows:
  - name: main
    sources: [app]
    output: sink
`, filepath.Join(dir, "state"), admin, log, s.URL())), 0o600))
	p := startAgent(t, "run", "-c", cfg)
	require.Eventually(t, func() bool {
		return metric(admin, "agent_spool_blocked_appends") > 0
	}, time.Minute, 50*time.Millisecond, "the spool never filled: bytes %v, read %v",
		metric(admin, "agent_spool_bytes"), metric(admin, "agent_records_received_total"))
	require.Greater(t, metric(admin, "agent_spool_bytes"), float64(2<<20))
	require.Equal(t, 1.0, metric(admin, "agent_spool_full"))
	// Reading pauses: the count stops growing well short of the file, and
	// memory stays flat while the agent waits.
	time.Sleep(2 * time.Second)
	paused := metric(admin, "agent_records_received_total")
	rss1 := metric(admin, "process_resident_memory_bytes")
	time.Sleep(2 * time.Second)
	require.Equal(t, paused, metric(admin, "agent_records_received_total"), "reading must pause while the spool is full")
	require.Less(t, paused, float64(n/2))
	rss2 := metric(admin, "process_resident_memory_bytes")
	require.LessOrEqual(t, rss2, rss1*1.2+4<<20, "memory must stay flat while blocked")
	if !raceEnabled { // the race detector's shadow memory would dominate
		require.Less(t, rss2, float64(100<<20), "memory must stay bounded while blocked")
	}
	s.start()
	require.Eventually(t, func() bool { return s.distinct() == n }, 2*time.Minute, 100*time.Millisecond)
	require.Eventually(t, func() bool { return metric(admin, "agent_spool_full") == 0 }, time.Minute, 100*time.Millisecond,
		"the spool's full gauge never went back")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	requireAllArrived(t, s, n, true)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

// metric reads the sum of a metric's samples from the admin endpoint
// (-1 when unreachable).
func metric(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

var _ = context.Background

func TestTail_SecondSignalExitsAtOnceAndLosesNothing(t *testing.T) {
	t.Parallel()
	const n = 50_000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	state := filepath.Join(dir, "state")
	writeLog(t, log, 0, n, 100)
	s := newSink(t)
	s.stop() // down: the first signal's drain would wait for it
	admin := freeAddr(t)
	p := startAgent(t, "tail", log, "--to", s.URL(), "--state-dir", state, "--admin", admin)
	require.Eventually(t, func() bool { return metric(admin, "agent_records_received_total") >= n }, time.Minute, 50*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	first := time.Now()
	// Two signals sent back to back may merge into one, and a signal within
	// signalCoalesce of the first is the same request (GNU timeout sends it
	// twice): send the second once the first has begun the shutdown
	// (readiness drops) and the window is over.
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}, 30*time.Second, 10*time.Millisecond)
	time.Sleep(time.Until(first.Add(signalCoalesce + 200*time.Millisecond)))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 1, p.wait(t, 3*time.Second), "a second signal exits at once with status 1")
	require.Contains(t, p.stderr.String(), "second signal")

	s.start()
	p = startAgent(t, "tail", log, "--once", "--to", s.URL(), "--state-dir", state)
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	requireAllArrived(t, s, n, true)
}
