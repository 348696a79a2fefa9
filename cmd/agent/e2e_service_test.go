package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent"
)

// notifySocket is a fake systemd: the datagram socket NOTIFY_SOCKET names,
// collecting every message in order.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
	done chan struct{}
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd") // short: a socket path has ~100 bytes
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify"), done: make(chan struct{})}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	require.NoError(t, err)
	go func() {
		defer close(n.done)
		buf := make([]byte, 4096)
		for {
			k, err := n.conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { n.conn.Close(); <-n.done })
	return n
}

func (n *notifySocket) messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// index is the position of the first message with prefix at or after from (-1: none).
func indexOf(msgs []string, prefix string, from int) int {
	for i := from; i < len(msgs); i++ {
		if strings.HasPrefix(msgs[i], prefix) {
			return i
		}
	}
	return -1
}

// startAgentEnv is startAgent with extra environment variables.
func startAgentEnv(t *testing.T, env []string, args ...string) *agentProc {
	t.Helper()
	cmd := agentCmd(args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	sw := &syncWriter{w: &stderr}
	cmd.Stderr, cmd.Stdout = sw, sw
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

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(body), 0o600))
	return cfg
}

// Under systemd (Type=notify, WatchdogSec=): READY=1 once running, then
// STATUS= lines and WATCHDOG=1 pings, STOPPING=1 at SIGTERM, in that order;
// JSON logs carry one component key per line and the version at start-up.
func TestRun_UnderSystemd_NotifiesReadyStatusWatchdogStopping(t *testing.T) {
	t.Parallel()
	const n = 2000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 80)
	s := newSink(t)
	admin := freeAddr(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
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
`, filepath.Join(dir, "state"), admin, log, s.URL()))
	sd := newNotifySocket(t)
	p := startAgentEnv(t, []string{"NOTIFY_SOCKET=" + sd.path, "WATCHDOG_USEC=400000"}, "run", "-c", cfg, "--log-format", "json")
	p.waitFor(t, time.Minute, func() bool { return s.distinct() == n }, "not every line arrived")
	p.waitFor(t, time.Minute, func() bool {
		m := sd.messages()
		return indexOf(m, "STATUS=", 0) >= 0 && indexOf(m, "WATCHDOG=1", 0) >= 0 && strings.Count(strings.Join(m, "\n"), "WATCHDOG=1") >= 3
	}, "no STATUS= and WATCHDOG=1 messages")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())

	m := sd.messages()
	t.Logf("notify messages: %d, first %q", len(m), m[:min(len(m), 4)])
	require.Equal(t, "READY=1", m[0], "READY=1 comes first")
	require.Equal(t, 1, strings.Count(strings.Join(m, "\n"), "READY=1"), "one READY=1")
	stopping := indexOf(m, "STOPPING=1", 0)
	require.Positive(t, stopping, "STOPPING=1 after READY=1: %q", m)
	require.Positive(t, indexOf(m[:stopping], "WATCHDOG=1", 1), "watchdog pings while running")
	st := indexOf(m[:stopping], "STATUS=", 1)
	require.Positive(t, st, "a STATUS= line while running")
	require.Regexp(t, `^STATUS=running; \d+ records/s in, \d+ records/s out; backlog \d+ entries`, m[st])

	// Logs: JSON, one component key per line, durations as strings.
	lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
	sawStart, sawComponent := false, false
	for _, line := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "not a JSON line: %s", line)
		require.LessOrEqual(t, strings.Count(line, `"component":`), 1, "component key repeated: %s", line)
		if strings.Count(line, `"component":`) == 1 {
			sawComponent = true
		}
		if rec["msg"] == "agent starting" {
			sawStart = true
			require.Equal(t, "dev", rec["version"])
			require.NotEmpty(t, rec["go"])
		}
		for k, v := range rec {
			if strings.HasSuffix(k, "_in") || k == "after" || k == "took" {
				_, isString := v.(string)
				require.True(t, isString, "duration %s not a string: %s", k, line)
			}
		}
	}
	require.True(t, sawStart, "no start-up line with the version")
	require.True(t, sawComponent, "no line with a component")
}

// statusJSON runs `agent status --json` against the agent at admin.
func statusJSON(t *testing.T, admin string) (agent.Status, bool) {
	t.Helper()
	out, err := agentCmd("status", "--json", "--admin", admin).Output()
	if err != nil {
		return agent.Status{}, false
	}
	var st agent.Status
	require.NoError(t, json.Unmarshal(out, &st), "agent status --json: %s", out)
	return st, true
}

// fileLines counts the numbered lines in a file output's file.
func fileLines(t *testing.T, path string) map[int]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return map[int]int{}
	}
	require.NoError(t, err)
	got := map[int]int{}
	for _, m := range regexp.MustCompile(`L(\d{8}) `).FindAllSubmatch(b, -1) {
		k, _ := strconv.Atoi(string(m[1]))
		got[k]++
	}
	return got
}

// A flow's failover may be an output of another type: HTTP primary, file
// failover. The primary goes down, then comes back: every line arrives at
// one of them, and `agent status --json` shows the switch both ways.
func TestFailover_HTTPToFileAndBack_SeenInStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	s := newSink(t)
	admin := freeAddr(t)
	failFile := filepath.Join(dir, "failover.ndjson")
	cfg := writeConfig(t, dir, fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: web
    type: http
    http: {url: %q, timeout: 2s}
  - name: local
    type: file
    file: {path: %q}
flows:
  - name: main
    sources: [app]
    output: web
    failover: local
    sender: {backoff_initial: 10ms, backoff_max: 200ms, failover_after: 2, failback_after: 1s}
`, filepath.Join(dir, "state"), admin, log, s.URL(), failFile))
	const per = 500
	writeLog(t, log, 0, per, 80)
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return s.distinct() == per }, "the first lines did not reach the primary")
	st, ok := statusJSON(t, admin)
	require.True(t, ok)
	require.Len(t, st.Flows, 1)
	require.Equal(t, "web", st.Flows[0].Output)
	require.False(t, st.Flows[0].OnFailover)
	require.Len(t, st.Flows[0].Sources, 1)
	require.NotNil(t, st.Flows[0].Sources[0].LastRead)

	// The primary goes down: the flow switches to the file.
	s.stop()
	writeLog(t, log, per, 2*per, 80)
	p.waitFor(t, time.Minute, func() bool {
		st, ok := statusJSON(t, admin)
		return ok && st.Flows[0].OnFailover && st.Flows[0].Output == "local"
	}, "status never showed the failover output active")
	p.waitFor(t, time.Minute, func() bool { return len(fileLines(t, failFile)) > 0 }, "nothing reached the failover file")
	st, _ = statusJSON(t, admin)
	var web agent.OutputStatus
	for _, o := range st.Outputs {
		if o.Name == "web" {
			web = o
		}
	}
	require.NotEmpty(t, web.LastError, "the primary's last error is shown")
	require.Equal(t, agent.OutputFailedOver, web.State)
	require.Equal(t, "http", web.Type)
	require.Positive(t, metric(admin, "agent_output_failovers_total"))
	require.Equal(t, 1.0, metric(admin, `agent_flow_active_output{flow="main",output="local"}`))
	table, err := agentCmd("status", "--admin", admin).CombinedOutput()
	require.NoError(t, err, "%s", table)
	require.Contains(t, string(table), "local (failover; primary web failing)")
	require.Regexp(t, `(?m)^web\s+http\s+failed over for \d`, string(table))

	// The primary comes back: after failback_after the flow probes it and stays.
	// The probe rides on traffic: lines keep coming until it happened.
	s.start()
	next := 2 * per
	p.waitFor(t, time.Minute, func() bool {
		if next < 3*per {
			writeLog(t, log, next, next+10, 80)
			next += 10
		}
		st, ok := statusJSON(t, admin)
		return ok && !st.Flows[0].OnFailover && st.Flows[0].Output == "web"
	}, "status never showed the primary active again")
	writeLog(t, log, next, 3*per, 80)
	union := func() int {
		got := fileLines(t, failFile)
		for i := range 3 * per {
			if s.count(i) > 0 {
				got[i]++
			}
		}
		return len(got)
	}
	p.waitFor(t, time.Minute, func() bool { return union() == 3*per }, "not every line arrived at one of the outputs")
	require.Positive(t, metric(admin, "agent_output_failbacks_total"))
	require.Equal(t, 1.0, metric(admin, `agent_flow_active_output{flow="main",output="web"}`))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	out := p.stderr.String()
	require.Contains(t, out, "using the failover output")
	require.Contains(t, out, "trying the primary output again")
}

// agent tap prints a rate-limited sample of the records entering a flow;
// the records still all reach the destination.
func TestTap_SamplesTheFlowsRecordsAtTheAskedRate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	s := newSink(t)
	admin := freeAddr(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
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
`, filepath.Join(dir, "state"), admin, log, s.URL()))
	writeLog(t, log, 0, 1, 80)
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return s.distinct() == 1 }, "the agent did not start")

	bad := agentCmd("tap", "nope", "--admin", admin)
	out, err := bad.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `no flow "nope" (the flows: main)`)
	_, errOut, code := runBin(t, "tap", "main", "--rate", "0", "--admin", admin)
	require.Equal(t, 2, code, errOut)
	require.Equal(t, "agent tap: --rate 0: want records per second in (0, 1000]\n", errOut)

	const rate = 5
	tp := agentCmd("tap", "main", "--rate", strconv.Itoa(rate), "--admin", admin)
	stdout, err := tp.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, tp.Start())
	started := time.Now()
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := 1
	var got []string
	deadline := time.After(time.Minute)
	for len(got) < 8 {
		writeLog(t, log, next, next+200, 80) // far more than the rate
		next += 200
		select {
		case l := <-lines:
			got = append(got, l)
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("agent tap printed %d lines in a minute", len(got))
		}
	}
	elapsed := time.Since(started)
	require.NoError(t, tp.Process.Signal(syscall.SIGINT))
	for l := range lines {
		got = append(got, l)
	}
	require.NoError(t, tp.Wait())
	for _, l := range got {
		require.Regexp(t, `^L\d{8} `, l, "a record the test wrote")
	}
	// A burst of one, then at most rate a second (plus the time the last
	// lines took to reach the pipe).
	require.LessOrEqual(t, float64(len(got)), 1+rate*(time.Since(started).Seconds()+1), "tap sampled faster than asked (%d lines in %s)", len(got), elapsed)
	p.waitFor(t, time.Minute, func() bool { return s.distinct() == next }, "not every line arrived")

	// agent top prints the status until q: on a pipe, plain snapshots
	// without the terminal's clear-screen codes.
	top := agentCmd("top", "--admin", admin, "-n", "1000")
	keys, err := top.StdinPipe()
	require.NoError(t, err)
	var screen syncWriter
	screen.w = new(bytes.Buffer)
	top.Stdout = &screen
	require.NoError(t, top.Start())
	p.waitFor(t, time.Minute, func() bool {
		screen.mu.Lock()
		defer screen.mu.Unlock()
		return strings.Count(screen.w.String(), "OUTPUT") >= 2
	}, "agent top did not print the status twice")
	screen.mu.Lock()
	require.NotContains(t, screen.w.String(), "\033", "escape codes on a pipe")
	screen.mu.Unlock()
	_, err = keys.Write([]byte("q"))
	require.NoError(t, err)
	topDone := make(chan error, 1)
	go func() { topDone <- top.Wait() }()
	select {
	case err := <-topDone:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		_ = top.Process.Kill()
		t.Fatal("agent top did not quit on q")
	}
	screen.mu.Lock()
	require.Regexp(t, `(?m)^main\s+sink\s+`, screen.w.String())
	screen.mu.Unlock()

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
}

// A reload (agent reload, SIGHUP) applies the new configuration (here the
// output's URL: the flow gets a new sender) without losing a line; a broken configuration is
// refused with its file:line and the running pipeline stays.
func TestReload_ChangesTheOutputsURLLosingNothing_BrokenConfigKeepsTheOldOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	sa, sb := newSink(t), newSink(t)
	admin := freeAddr(t)
	config := func(url string) string {
		return fmt.Sprintf(`
state_dir: %s
shutdown_timeout: 5s
admin: {listen: %q}
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
`, filepath.Join(dir, "state"), admin, log, url)
	}
	cfg := writeConfig(t, dir, config(sa.URL()))
	sd := newNotifySocket(t)
	p := startAgentEnv(t, []string{"NOTIFY_SOCKET=" + sd.path}, "run", "-c", cfg)
	next := 0
	write := func() {
		writeLog(t, log, next, next+50, 80)
		next += 50
	}
	// keepWriting writes lines until cond holds.
	keepWriting := func(cond func() bool, msg string) {
		p.waitFor(t, time.Minute, func() bool { write(); return cond() }, msg)
	}
	keepWriting(func() bool { return sa.distinct() > 100 }, "lines did not reach the first URL")

	writeConfig(t, dir, config(sb.URL()))
	out, err := agentCmd("reload", "--admin", admin).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "reloaded\n", string(out))
	keepWriting(func() bool { return sb.distinct() > 100 }, "lines did not reach the new URL after the reload")
	aAfter := sa.distinct()

	// A broken configuration: refused, with where the problem is.
	require.NoError(t, os.WriteFile(cfg, []byte(config(sa.URL())+"bogus_key: 1\n"), 0o600))
	out, err = agentCmd("reload", "--admin", admin).CombinedOutput()
	require.Error(t, err)
	require.Regexp(t, `agent\.yaml:\d+`, string(out))
	require.Contains(t, string(out), "bogus_key")
	require.Equal(t, 1.0, metric(admin, `agent_config_reloads_total{result="failed"}`))
	require.Equal(t, 1.0, metric(admin, `agent_config_reloads_total{result="ok"}`))
	bBefore := sb.distinct()
	keepWriting(func() bool { return sb.distinct() > bBefore+100 }, "the running pipeline did not keep going after a refused reload")
	require.Equal(t, aAfter, sa.distinct(), "the refused configuration's URL got nothing")

	// SIGHUP reloads too.
	writeConfig(t, dir, config(sa.URL()))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	keepWriting(func() bool { return sa.distinct() > aAfter+100 }, "SIGHUP did not reload")

	arrived := func() int {
		n := 0
		for i := range next {
			if sa.count(i)+sb.count(i) > 0 {
				n++
			}
		}
		return n
	}
	p.waitFor(t, time.Minute, func() bool { return arrived() == next }, "lines lost across reloads")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	t.Logf("%d lines, %d at the first URL, %d at the second", next, sa.distinct(), sb.distinct())

	m := sd.messages()
	require.Equal(t, "READY=1", m[0])
	reloading := indexOf(m, "RELOADING=1\nMONOTONIC_USEC=", 0)
	require.Positive(t, reloading, "RELOADING=1 with MONOTONIC_USEC: %q", m)
	require.Greater(t, indexOf(m, "READY=1", reloading), reloading, "READY=1 again after the reload")
	require.Positive(t, indexOf(m, "STOPPING=1", reloading))
	require.Contains(t, p.stderr.String(), "reload refused; the running configuration stays")
}
