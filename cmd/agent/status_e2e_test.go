package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent"
)

// hang makes s take each request and not answer until the returned
// function is called (registered as a cleanup too, before the sink stops).
func hang(t *testing.T, s *sink) (free func()) {
	ch := make(chan struct{})
	var once sync.Once
	free = func() { once.Do(func() { close(ch) }) }
	f := func(int64, http.ResponseWriter) bool {
		<-ch
		return false // then take the records
	}
	s.respond.Store(&f)
	t.Cleanup(free)
	return free
}

func outputOf(st agent.Status, name string) agent.OutputStatus {
	for _, o := range st.Outputs {
		if o.Name == name {
			return o
		}
	}
	return agent.OutputStatus{}
}

func singleFlowConfig(t *testing.T, dir, admin, log, httpBlock string) string {
	return writeConfig(t, dir, fmt.Sprintf(`
state_dir: %s
shutdown_timeout: 30s
admin: {listen: %q}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: web
    type: http
    http: %s
flows:
  - name: main
    sources: [app]
    output: web
    sender: {backoff_initial: 10ms, backoff_max: 100ms}
`, filepath.Join(dir, "state"), admin, log, httpBlock))
}

// A destination that takes the connection and does not answer: agent
// status shows its output stalled with how long the send has waited (not
// ok, not idle), /metrics the oldest send's age, and the log warns, all
// before the send's timeout; once it answers, the output is ok again.
func TestStatus_DestinationNotAnswering_OutputShownStalled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	s := newSink(t)
	free := hang(t, s)
	admin := freeAddr(t)
	cfg := singleFlowConfig(t, dir, admin, log, fmt.Sprintf("{url: %q, timeout: 4s}", s.URL()))
	writeLog(t, log, 0, 200, 80)
	p := startAgent(t, "run", "-c", cfg)

	var st agent.Status
	p.waitFor(t, time.Minute, func() bool {
		var ok bool
		st, ok = statusJSON(t, admin)
		return ok && outputOf(st, "web").State == agent.OutputStalled
	}, "agent status --json never showed the output stalled")
	web := outputOf(st, "web")
	require.Positive(t, web.SendsInFlight)
	require.GreaterOrEqual(t, web.SendingForSeconds, 2.0, "stalled after half the 4s timeout")
	p.waitFor(t, time.Minute, func() bool {
		out, err := agentCmd("status", "--admin", admin).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return regexp.MustCompile(`(?m)^web\s+http\s+stalled \(sending for \d+s\)`).MatchString(string(out))
	}, "agent status never showed the output stalled in its table")
	p.waitFor(t, time.Minute, func() bool { return metric(admin, `agent_output_oldest_send_age_seconds{output="web"}`) >= 2 },
		"agent_output_oldest_send_age_seconds never showed the waiting send")
	p.waitFor(t, time.Minute, func() bool { return strings.Contains(p.output(), "has not answered a send for long") },
		"no warning about the send waiting")

	free()
	p.waitFor(t, time.Minute, func() bool { return s.distinct() == 200 }, "the lines did not arrive once the destination answered")
	p.waitFor(t, time.Minute, func() bool {
		st, ok := statusJSON(t, admin)
		web := outputOf(st, "web")
		return ok && web.State == agent.OutputOK && web.SendsInFlight == 0 && web.SendingFor == ""
	}, "the output was not ok again")
	require.Zero(t, metric(admin, `agent_output_oldest_send_age_seconds{output="web"}`))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// While a reload is applied, agent status says reloading (and for how
// long). This one is slow: it gives the flow a new URL, so the old sender's
// send in flight (its destination does not answer) must finish first.
func TestStatus_SlowReload_ShownReloading(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	slow, next := newSink(t), newSink(t)
	free := hang(t, slow)
	admin := freeAddr(t)
	cfg := singleFlowConfig(t, dir, admin, log, fmt.Sprintf("{url: %q}", slow.URL()))
	writeLog(t, log, 0, 200, 80)
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return slow.requests.Load() > 0 }, "no send to the first URL")
	st, ok := statusJSON(t, admin)
	require.True(t, ok)
	require.Equal(t, "running", st.State)

	singleFlowConfig(t, dir, admin, log, fmt.Sprintf("{url: %q}", next.URL()))
	reload := agentCmd("reload", "--admin", admin)
	var reloadOut bytes.Buffer
	reload.Stdout, reload.Stderr = &reloadOut, &reloadOut
	require.NoError(t, reload.Start())
	reloaded := make(chan error, 1)
	go func() { reloaded <- reload.Wait() }()

	p.waitFor(t, time.Minute, func() bool {
		st, ok = statusJSON(t, admin)
		return ok && st.State == agent.StateReloading && st.ReloadingFor != ""
	}, "agent status --json never said reloading")
	require.True(t, st.Ready, "a reload keeps the pipeline ready")
	table, err := agentCmd("status", "--admin", admin).CombinedOutput()
	require.NoError(t, err, "%s", table)
	require.Regexp(t, `^agent \S+, reloading for \S+ \(up \S+\), ready;`, string(table))

	free()
	select {
	case err := <-reloaded:
		require.NoError(t, err, reloadOut.String())
	case <-time.After(time.Minute):
		t.Fatal("agent reload did not return")
	}
	require.Equal(t, "reloaded\n", reloadOut.String())
	st, ok = statusJSON(t, admin)
	require.True(t, ok)
	require.Equal(t, "running", st.State)
	require.Empty(t, st.ReloadingFor)
	writeLog(t, log, 200, 300, 80)
	p.waitFor(t, time.Minute, func() bool {
		for i := range 300 {
			if slow.count(i)+next.count(i) == 0 {
				return false
			}
		}
		return true
	}, "lines lost across the reload")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// A SIGHUP that finds the file broken leaves the old configuration running
// (logged); agent status must say so too, where the operator looks: the
// file on disk is not what runs, and a restart would fail on it. A good
// reload afterwards clears it.
func TestStatus_RefusedReloadIsShown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	s := newSink(t)
	admin := freeAddr(t)
	cfg := singleFlowConfig(t, dir, admin, log, fmt.Sprintf("{url: %q}", s.URL()))
	good, err := os.ReadFile(cfg)
	require.NoError(t, err)
	writeLog(t, log, 0, 10, 80)
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return s.distinct() == 10 }, "the first lines did not arrive")
	st, ok := statusJSON(t, admin)
	require.True(t, ok)
	require.Nil(t, st.LastReload, "no reload yet")

	require.NoError(t, os.WriteFile(cfg, append(append([]byte{}, good...), "\nbogus_key: 1\n"...), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	p.waitFor(t, time.Minute, func() bool {
		st, ok = statusJSON(t, admin)
		return ok && st.LastReload != nil
	}, "agent status --json never showed the refused reload")
	require.Equal(t, "failed", st.LastReload.Result)
	require.Contains(t, st.LastReload.Error, "bogus_key")
	require.Equal(t, "running", st.State, "the old configuration runs")
	table, err := agentCmd("status", "--admin", admin).CombinedOutput()
	require.NoError(t, err, "%s", table)
	require.Regexp(t, `(?m)^LAST RELOAD REFUSED \(.*\): the configuration loaded before it still runs`, string(table))
	require.Regexp(t, `(?m)^  .*bogus_key: unknown field`, string(table))
	writeLog(t, log, 10, 20, 80)
	p.waitFor(t, time.Minute, func() bool { return s.distinct() == 20 }, "the old configuration stopped shipping")

	require.NoError(t, os.WriteFile(cfg, good, 0o600))
	out, err := agentCmd("reload", "--admin", admin).CombinedOutput()
	require.NoError(t, err, "%s", out)
	st, ok = statusJSON(t, admin)
	require.True(t, ok)
	require.Equal(t, "ok", st.LastReload.Result)
	table, err = agentCmd("status", "--admin", admin).CombinedOutput()
	require.NoError(t, err, "%s", table)
	require.NotContains(t, string(table), "REFUSED")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// The same configuration run twice: the second agent cannot take the admin
// address. It exits 1 saying that an agent probably runs already, and how
// to ask it, not only "bind: address already in use".
func TestRun_SecondAgentOnTheSameConfigSaysOneRunsAlready(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	s := newSink(t)
	admin := freeAddr(t)
	cfg := singleFlowConfig(t, dir, admin, log, fmt.Sprintf("{url: %q}", s.URL()))
	writeLog(t, log, 0, 10, 80)
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { _, ok := statusJSON(t, admin); return ok }, "the first agent did not start")

	_, errOut, code := runBin(t, "run", "-c", cfg)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "address already in use (is an agent running with this configuration already? agent status --admin "+admin)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// A backlog the agent finds in its spool at start is as old as its oldest
// segment's last write, at least: the age restarted from zero with each
// start, so an alert on agent_flow_oldest_undelivered_age_seconds cleared at
// every restart of an agent whose destination stays down.
func TestRun_RecoveredBacklogKeepsItsAgeAcrossARestart(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	admin, sock, down := freeAddr(t), freeAddr(t), freeAddr(t) // nothing listens on down
	cfg := writeConfig(t, dir, fmt.Sprintf(`
state_dir: %s
shutdown_timeout: 1s
admin: {listen: %q}
sources:
  - {name: sock, type: socket, socket: {listen: "tcp://%s"}}
outputs:
  - {name: down, type: http, http: {url: "http://%s/x"}}
flows:
  - {name: main, sources: [sock], output: down}
`, filepath.Join(dir, "state"), admin, sock, down))
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_config_reloads_total") >= 0 }, "the agent did not start")
	c := dialWhenUp(t, "tcp", sock, p)
	_, err := c.Write([]byte("a line\n"))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	p.waitFor(t, time.Minute, func() bool { return metric(admin, `agent_spool_entries{flow="main"}`) >= 1 }, "nothing reached the spool")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())

	// The backlog was written two hours ago.
	segs, err := filepath.Glob(filepath.Join(dir, "state", "spool", "main", "*.seg"))
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	then := time.Now().Add(-2 * time.Hour)
	for _, s := range segs {
		require.NoError(t, os.Chtimes(s, then, then))
	}
	p = startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_config_reloads_total") >= 0 }, "the agent did not start again")
	var age float64
	p.waitFor(t, time.Minute, func() bool {
		age = metric(admin, `agent_flow_oldest_undelivered_age_seconds{flow="main"}`)
		return age > 0
	}, "no age for the recovered backlog")
	require.GreaterOrEqual(t, age, 2*3600.0, "the recovered backlog's age")
	out, errOut, code := runBin(t, "status", "--admin", admin)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^main\s+down\s+\S+\s+\d+\s+\S+ \S+\s+2h0m\d+s\s`, out)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}
