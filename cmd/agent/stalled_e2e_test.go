package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readyz asks the agent's /readyz with query q.
func readyz(t *testing.T, admin, q string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/readyz" + q)
	if err != nil {
		return 0, err.Error() // not listening yet
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

var stalledLine = regexp.MustCompile(`output web stalled: no answer for \d+s \(since \d\d:\d\d:\d\d UTC, \d+ sends? waiting\)`)

// A destination that takes the connection and does not answer: /readyz
// stays 200 (a slow destination is no reason to restart or route around
// the agent) but names the stalled output in its body, as agent status
// does under its first line; /readyz?fail_stalled=D opts in to a 503 once
// the destination has not answered for longer than D, counted across the
// sends' timeouts and retries. Once it answers, the body is plain "ready"
// again.
func TestReadyz_StalledOutputNamedButReadyUnlessAskedToFail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	s := newSink(t)
	free := hang(t, s)
	admin := freeAddr(t)
	cfg := singleFlowConfig(t, dir, admin, log, fmt.Sprintf("{url: %q, timeout: 4s}", s.URL()))
	writeLog(t, log, 0, 200, 80)
	p := startAgent(t, "run", "-c", cfg)

	// Each send times out after 4s and is retried: stalled from 2s to 4s
	// of each attempt, so each observation is waited for on its own.
	p.waitFor(t, time.Minute, func() bool {
		code, body := readyz(t, admin, "")
		if code == 0 || strings.HasPrefix(body, "not ready: no pipeline") || strings.HasPrefix(body, "not ready: the pipeline is starting") {
			return false
		}
		require.Equal(t, http.StatusOK, code, body)
		return strings.HasPrefix(body, "ready\n") && stalledLine.MatchString(body)
	}, "/readyz never named the stalled output")
	p.waitFor(t, time.Minute, func() bool {
		code, body := readyz(t, admin, "?fail_stalled=0s")
		if code == http.StatusServiceUnavailable {
			require.Regexp(t, "^not ready: "+stalledLine.String(), body)
			return true
		}
		require.Equal(t, http.StatusOK, code, body)
		return false
	}, "/readyz?fail_stalled=0s never failed on the stalled output")
	// Across the timeout and the retries: since the first send without
	// an answer, not since the current one.
	long := regexp.MustCompile(`output web stalled: no answer for ([5-9]|\d\d)s`)
	p.waitFor(t, time.Minute, func() bool {
		_, body := readyz(t, admin, "")
		return long.MatchString(body)
	}, "/readyz never counted the wait across the 4s timeout")
	p.waitFor(t, time.Minute, func() bool {
		code, _ := readyz(t, admin, "?fail_stalled=5s")
		return code == http.StatusServiceUnavailable
	}, "/readyz?fail_stalled=5s never failed, though every send times out after 4s")
	p.waitFor(t, time.Minute, func() bool {
		code, body := readyz(t, admin, "?fail_stalled=1h")
		require.Equal(t, http.StatusOK, code, "not stalled for an hour: %s", body)
		return stalledLine.MatchString(body)
	}, "/readyz?fail_stalled=1h never named the stalled output")
	code, body := readyz(t, admin, "?fail_stalled=soon")
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "fail_stalled: want a duration such as 0s or 1m, got \"soon\"\n", body)
	p.waitFor(t, time.Minute, func() bool {
		out, err := agentCmd("status", "--admin", admin).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return regexp.MustCompile(`^agent \S+, running for \S+, ready; dead-lettered 0\n  ` + stalledLine.String() + "\n").Match(out)
	}, "agent status never named the stalled output under its first line")

	free()
	p.waitFor(t, time.Minute, func() bool { return s.distinct() == 200 }, "the lines did not arrive once the destination answered")
	p.waitFor(t, time.Minute, func() bool {
		code, body := readyz(t, admin, "?fail_stalled=0s")
		return code == http.StatusOK && body == "ready\n"
	}, "/readyz still named a stalled output")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// agent tail's status line (drawn on a terminal: here the pseudo-terminal
// of script(1)) says the destination is stalled, for how long and since
// when; the sender's WARN line about it clears the status line before it
// is written (not drawn over its text) and the status line is drawn again
// under it; the run then ends normally once the destination answers.
func TestTail_StatusLineSaysTheDestinationIsStalled(t *testing.T) {
	t.Parallel()
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) (util-linux) is needed for a terminal")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	s := newSink(t)
	free := hang(t, s)
	writeLog(t, log, 0, 100, 80)
	cmdline := fmt.Sprintf("%s tail --once %s --to %s --timeout 4s --state-dir %s", agentBin, log, s.URL(), filepath.Join(dir, "state"))
	cmd := exec.Command(scriptBin, "-q", "-f", "-e", "-c", cmdline, "/dev/null")
	var out bytes.Buffer
	sw := &syncWriter{w: &out}
	cmd.Stdout, cmd.Stderr = sw, sw
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	text := func() string { sw.mu.Lock(); defer sw.mu.Unlock(); return out.String() }
	stalled := regexp.MustCompile(`STALLED: no answer for \d+s \(since \d\d:\d\d:\d\d\)`)
	deadline := time.Now().Add(time.Minute)
	warned := regexp.MustCompile(`time=\S+ level=WARN msg="the destination has not answered a send for long[^\r\n]*\r?\n`)
	for !stalled.MatchString(text()) || !warned.MatchString(text()) {
		if time.Now().After(deadline) {
			t.Fatalf("the status line never said stalled, or the log never warned:\n%q", tail(text(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// "\r\033[K" erased the status line (drawn before: at 1s, the warning
	// comes at 2s), then the log line, then the status line again.
	require.Regexp(t, `\r\x1b\[K`+warned.String()+`\d[^\r\n]* rec/s `, text())
	free()
	select {
	case err := <-done:
		exited = true
		require.NoError(t, err, "%q", tail(text(), 2000))
	case <-time.After(time.Minute):
		t.Fatalf("agent tail --once did not end once the destination answered:\n%q", tail(text(), 2000))
	}
	require.Equal(t, 100, s.distinct())
}

// A second Ctrl-C ends agent tail at once and leaves no status line on the
// terminal's last line, under the shell's next prompt (the first Ctrl-C
// erases it: the status line is not drawn while the agent stops).
func TestTail_SecondCtrlCLeavesNoStatusLine(t *testing.T) {
	t.Parallel()
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) (util-linux) is needed for a terminal")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	s := newSink(t)
	hang(t, s) // the run cannot end by itself
	writeLog(t, log, 0, 100, 80)
	pidFile := filepath.Join(dir, "pid")
	cmdline := fmt.Sprintf("echo $$ > %s; exec %s tail %s --to %s --state-dir %s", pidFile, agentBin, log, s.URL(), filepath.Join(dir, "state"))
	cmd := exec.Command(scriptBin, "-q", "-f", "-c", cmdline, "/dev/null")
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	sw := &syncWriter{w: &out}
	cmd.Stdout, cmd.Stderr = sw, sw
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			// The agent is script's grandchild, in a session of its own:
			// killed by its pid, which it wrote.
			if raw, err := os.ReadFile(pidFile); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			_ = cmd.Process.Kill()
			<-done
		}
	})
	text := func() string { sw.mu.Lock(); defer sw.mu.Unlock(); return out.String() }
	statusShown := regexp.MustCompile(`\d[^\r\n]* rec/s `)
	deadline := time.Now().Add(time.Minute)
	for !statusShown.MatchString(text()) {
		if time.Now().After(deadline) {
			t.Fatalf("the status line was never drawn:\n%q", tail(text(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	raw, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGINT))
	hinted := "a second Ctrl-C exits at once"
	for !strings.Contains(text(), hinted) {
		if time.Now().After(deadline) {
			t.Fatalf("no hint after the first Ctrl-C:\n%q", tail(text(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // a second press, not the same one delivered twice
	require.NoError(t, syscall.Kill(pid, syscall.SIGINT), "%q", text())
	select {
	case <-done:
		exited = true
	case <-time.After(time.Minute):
		t.Fatalf("a second Ctrl-C did not end agent tail:\n%q", tail(text(), 2000))
	}
	got := text()
	i := strings.LastIndex(got, "exiting now")
	require.GreaterOrEqual(t, i, 0, "%q", tail(got, 2000))
	// After the last log line: nothing, or a status line erased again.
	after := got[i:]
	after = after[strings.Index(after, "\n")+1:]
	require.Regexp(t, `^([^\r\n]*\r\x1b\[K)?$`, after, "the status line was left on the terminal: %q", tail(got, 500))
}

// agent tail run as a background job of an interactive shell (`agent tail
// ... &`, here bash with job control in script(1)'s terminal, and `stty
// tostop` as some users set it) draws no status line: under tostop each
// draw stopped the job (SIGTTOU, "Stopped (tty output)"), so a job that
// reads no terminal stopped shipping; without it the line was drawn over
// the shell's prompt and what the user types.
func TestTail_BackgroundJobDrawsNoStatusLineAndKeepsRunning(t *testing.T) {
	t.Parallel()
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) (util-linux) is needed for a terminal")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is needed for job control")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	s := newSink(t)
	writeLog(t, log, 0, 100, 80)
	pidFile := filepath.Join(dir, "pid")
	inner := fmt.Sprintf("set -m; stty tostop; %s tail %s --to %s --state-dir %s & echo $! > %s; wait $!; echo waited=$?",
		agentBin, log, s.URL(), filepath.Join(dir, "state"), pidFile)
	cmd := exec.Command(scriptBin, "-q", "-f", "-c", bash+" -c '"+inner+"'", "/dev/null")
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	sw := &syncWriter{w: &out}
	cmd.Stdout, cmd.Stderr = sw, sw
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	text := func() string { sw.mu.Lock(); defer sw.mu.Unlock(); return out.String() }
	pid := 0
	exited := false
	t.Cleanup(func() {
		if !exited {
			if pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			_ = cmd.Process.Kill()
			<-done
		}
	})
	require.Eventually(t, func() bool {
		raw, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(raw)))
		return err == nil
	}, time.Minute, 20*time.Millisecond, "no pid: %q", text())
	state := func() string { // of the agent's process: T is stopped
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return "?"
		}
		return strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))[0]
	}
	require.Eventually(t, func() bool {
		require.NotEqual(t, "T", state(), "the background job was stopped (SIGTTOU): %q", tail(text(), 1000))
		return s.distinct() == 100
	}, time.Minute, 20*time.Millisecond, "%q", text())
	// The status line is drawn every second: three chances to stop.
	for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		require.NotEqual(t, "T", state(), "the background job was stopped (SIGTTOU): %q", tail(text(), 1000))
	}
	writeLog(t, log, 100, 200, 80) // still shipping
	require.Eventually(t, func() bool { return s.distinct() == 200 }, time.Minute, 20*time.Millisecond, "%q", text())
	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	select {
	case <-done:
		exited = true
	case <-time.After(time.Minute):
		t.Fatalf("agent tail did not end:\n%q", tail(text(), 2000))
	}
	require.Contains(t, text(), "waited=0")
	require.NotRegexp(t, `\d[^\r\n]* rec/s `, text(), "a status line was drawn by a background job")
}
