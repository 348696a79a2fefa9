package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The packaged unit (packaging/agent.service) confines the agent with a
// system call filter and a list of address families. A call the filter
// denies fails with EPERM only under systemd, which no other test runs. Here
// the binary runs under strace with a file source, a unix socket source
// with a group, the spool, an HTTP output and the admin endpoint, and every
// system call it made and every socket family it opened must be allowed by
// the unit (its SystemCallFilter= lines expanded by systemd-analyze as
// systemd does: the first line sets the default, later ones add or
// remove).
func TestServiceUnit_AllowsEverySyscallTheAgentMakes(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"strace", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install strace systemd)", tool)
		}
	}
	if out, err := exec.Command("strace", "-o", os.DevNull, "true").CombinedOutput(); err != nil {
		t.Skipf("strace cannot trace here (ptrace refused?): %v: %s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "packaging", "agent.service"))
	require.NoError(t, err)
	allowed, families := unitFilter(t, string(unit))

	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 100, 60)
	sock := filepath.Join(dir, "in.sock")
	s := newSink(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`state_dir: %s
admin: {listen: %q}
sources:
  - name: files
    type: file
    file: {include: [%s], start_at: beginning}
  - name: sock
    type: socket
    socket: {listen: "unix://%s", group: "%d"}
outputs:
  - name: out
    type: http
    http: {url: %q}
flows:
  - name: f
    sources: [files, sock]
    output: out
`, filepath.Join(dir, "state"), freeAddr(t), log, sock, os.Getgid(), s.URL()))

	// Not in the watched directory: every line strace writes would wake
	// the file source, whose calls strace writes.
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command("strace", "-f", "-qq", "-o", trace, agentBin, "run", "-c", cfg)
	// strace and the agent in a group of their own: the cleanup kills both
	// (killing strace alone leaves the agent running, detached, holding
	// the output pipe that Wait waits for).
	cmd.SysProcAttr = childAttr()
	cmd.SysProcAttr.Setpgid = true
	cmd.WaitDelay = 10 * time.Second
	var buf bytes.Buffer
	p := &agentProc{cmd: cmd, stderr: &buf, sw: &syncWriter{w: &buf}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.sw, p.sw
	require.NoError(t, cmd.Start())
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})

	// The agent is the child of strace that runs agentBin (strace may fork
	// short-lived children of its own first, to probe ptrace).
	var agentPID int
	bin, err := filepath.EvalSymlinks(agentBin)
	require.NoError(t, err)
	deadline := time.Now().Add(time.Minute)
	for agentPID == 0 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == bin {
				agentPID = pid
				break
			}
		}
		if agentPID == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	require.NotZero(t, agentPID, "strace started no agent: %s", p.output())

	for time.Now().Before(deadline) && s.distinct() < 100 {
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, 100, s.distinct(), "the file's lines did not arrive: %s", p.output())
	var c net.Conn
	for time.Now().Before(deadline) {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, err, "the socket source does not listen: %s", p.output())
	_, err = c.Write(numberedLine(nil, 100, 60))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	for time.Now().Before(deadline) && s.distinct() < 101 {
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, 101, s.distinct(), "the socket's line did not arrive: %s", p.output())
	require.NoError(t, syscall.Kill(agentPID, syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), "the agent under strace: %s", p.output())

	f, err := os.Open(trace)
	require.NoError(t, err)
	defer f.Close()
	call := regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]`)
	family := regexp.MustCompile(`\bsocket\((AF_[A-Z0-9]+)`)
	denied, badFamilies := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	calls := 0
	for sc.Scan() {
		line := sc.Text()
		if m := call.FindStringSubmatch(line); m != nil {
			calls++
			if !allowed[m[1]] {
				denied[m[1]]++
			}
		}
		if m := family.FindStringSubmatch(line); m != nil && !families[m[1]] {
			badFamilies[m[1]]++
		}
	}
	require.NoError(t, sc.Err())
	require.Greater(t, calls, 1000, "strace saw too few calls to judge")
	require.Empty(t, denied, "system calls the agent made that packaging/agent.service's SystemCallFilter= denies (EPERM under systemd)")
	require.Empty(t, badFamilies, "socket families the agent opened that RestrictAddressFamilies= refuses")
}

// unitFilter returns the system calls the unit's SystemCallFilter= lines
// allow and the families its RestrictAddressFamilies= allows.
func unitFilter(t *testing.T, unit string) (allowed, families map[string]bool) {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "syscall-filter", "--no-pager").Output()
	require.NoError(t, err)
	groups := map[string][]string{}
	var cur string
	for _, line := range strings.Split(string(out), "\n") {
		w := strings.TrimSpace(line)
		switch {
		case w == "" || strings.HasPrefix(w, "#"):
		case strings.HasPrefix(line, "@"):
			cur = w
		case cur != "":
			groups[cur] = append(groups[cur], w)
		}
	}
	var expand func(name string, into map[string]bool)
	expand = func(name string, into map[string]bool) {
		if !strings.HasPrefix(name, "@") {
			into[name] = true
			return
		}
		members, ok := groups[name]
		require.True(t, ok, "systemd-analyze knows no group %s", name)
		for _, m := range members {
			expand(m, into)
		}
	}
	allowed, families = map[string]bool{}, map[string]bool{}
	first := true
	for _, line := range strings.Split(unit, "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch key {
		case "SystemCallFilter":
			deny := strings.HasPrefix(val, "~")
			require.False(t, first && deny, "the test expects an allow list first")
			first = false
			set := map[string]bool{}
			for _, name := range strings.Fields(strings.TrimPrefix(val, "~")) {
				expand(name, set)
			}
			for name := range set {
				if deny {
					delete(allowed, name)
				} else {
					allowed[name] = true
				}
			}
		case "RestrictAddressFamilies":
			for _, f := range strings.Fields(val) {
				families[f] = true
			}
		}
	}
	require.False(t, first, "the unit has no SystemCallFilter=")
	require.NotEmpty(t, families, "the unit has no RestrictAddressFamilies=")
	require.True(t, slices.Contains(groups["@system-service"], "@file-system"), "systemd-analyze output not understood")
	return allowed, families
}
