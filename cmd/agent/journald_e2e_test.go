package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source/journald/journaldtest"
)

// journalConfig writes a config with one journald source and a file output.
func journalConfig(t *testing.T, dir, journald string) (cfgPath, outFile string) {
	t.Helper()
	outFile = filepath.Join(dir, "out", "out.ndjson")
	cfgPath = filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: off}
checkpoint: {interval: 50ms}
sources:
  - name: journal
    type: journald
    journald: %s
outputs:
  - name: out
    type: file
    file: {dir: %s}
flows:
  - name: main
    sources: [journal]
    output: out
`, filepath.Join(dir, "state"), journald, filepath.Dir(outFile))), 0o644))
	return cfgPath, outFile
}

// outputMessages counts the records of the file output by MESSAGE.
func outputMessages(t *testing.T, path string) map[string]int {
	t.Helper()
	out := map[string]int{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue // a line the killed agent was writing
		}
		if msg, ok := m["MESSAGE"].(string); ok {
			out[msg]++
		}
	}
	return out
}

// kill -9 while the journal is being shipped, then a restart: the agent
// resumes after the committed cursor (not from the start), nothing is
// missing, and only entries after that cursor may come twice.
func TestJournald_Kill9ThenRestartResumesAfterTheCommittedCursor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fake := journaldtest.BuildFake(t, dir)
	j := journaldtest.NewJournal(t, dir)
	startsLog := filepath.Join(dir, "starts.log")
	// The fake journalctl (started by the agent) reads these; given to the
	// agent alone, not set in the test process, so the test runs in parallel.
	env := append(os.Environ(), "FAKE_JOURNAL="+j.Path, "FAKE_JOURNAL_LOG="+startsLog)
	cfgPath, outFile := journalConfig(t, dir, fmt.Sprintf("{journalctl_path: %s, start_at: beginning}", fake))

	j.Append(t, 3000)
	p := startAgentFullEnv(t, env, "run", "-c", cfgPath)
	require.Eventually(t, func() bool { return len(outputMessages(t, outFile)) >= 3000 }, 60*time.Second, 20*time.Millisecond, "first 3000 entries; agent: %s", p.output())
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "state", "checkpoints.json"))
		return bytes.Contains(b, []byte(`"cursor": "`+journaldtest.Cursor(2999)+`"`))
	}, 60*time.Second, 20*time.Millisecond, "the cursor of entry 2999 checkpointed")
	j.Append(t, 2000) // still being shipped when the agent is killed
	require.Eventually(t, func() bool { return len(outputMessages(t, outFile)) > 3000 }, 60*time.Second, 5*time.Millisecond)
	require.NoError(t, p.cmd.Process.Kill())
	<-p.done

	j.Append(t, 1000)
	p = startAgentFullEnv(t, env, "run", "-c", cfgPath)
	require.Eventually(t, func() bool { return len(outputMessages(t, outFile)) == 6000 }, 60*time.Second, 20*time.Millisecond, "all 6000 entries; agent: %s", p.output())
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	require.Equal(t, 0, p.wait(t, 30*time.Second), p.output())

	starts, err := os.ReadFile(startsLog)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(starts)), "\n")
	require.Len(t, lines, 2, "one journalctl per agent run")
	require.NotContains(t, lines[0], "--after-cursor")
	_, after, ok := strings.Cut(lines[1], "--after-cursor=")
	require.True(t, ok, "the restart resumes after the checkpointed cursor: %s", lines[1])
	after, _, _ = strings.Cut(after, " ")
	k := -1
	for i := range 6000 {
		if journaldtest.Cursor(i) == after {
			k = i
		}
	}
	require.GreaterOrEqual(t, k, 2999, "the restart resumes at or after the cursor checkpointed before the kill")

	m := outputMessages(t, outFile)
	dups := 0
	for i := range 6000 {
		n := m[journaldtest.Message(i)]
		require.NotZero(t, n, "entry %d missing", i)
		if i <= k {
			require.Equal(t, 1, n, "entry %d is before the committed cursor: never sent again", i)
		}
		dups += n - 1
	}
	t.Logf("resumed after entry %d; %d entries delivered twice", k, dups)
}

func TestJournald_MissingJournalctlExitsNonZeroWithTheReason(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "bin", "journalctl")
	cfgPath, _ := journalConfig(t, dir, fmt.Sprintf("{journalctl_path: %s}", missing))
	_, errOut, code := runBin(t, "run", "-c", cfgPath)
	require.Equal(t, exitFailed, code, errOut)
	require.Contains(t, errOut, "journalctl not available")
	require.Contains(t, errOut, missing)
}

// With a real journal (journald running, journalctl able to read it), a
// line written with systemd-cat arrives as a record with its fields.
func TestJournald_RealJournalLineArrives(t *testing.T) {
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skip("no journalctl on this host:", err)
	}
	if _, err := exec.LookPath("systemd-cat"); err != nil {
		t.Skip("no systemd-cat on this host:", err)
	}
	if _, err := os.Stat("/run/systemd/journal/socket"); err != nil {
		t.Skipf("journald is not running here (%v): no journal to write to", err)
	}
	if out, err := exec.Command("journalctl", "-n1", "-q", "--no-pager").CombinedOutput(); err != nil {
		t.Skipf("the journal is not readable here: %v: %s", err, out)
	}
	dir := t.TempDir()
	tag := fmt.Sprintf("agent-e2e-%d", time.Now().UnixNano())
	cfgPath, outFile := journalConfig(t, dir, fmt.Sprintf("{identifiers: [%s], start_at: end}", tag))
	p := startAgent(t, "run", "-c", cfgPath)
	msg := "hello from the journald e2e test"
	// journalctl starts at the end once running: write until a line arrives.
	require.Eventually(t, func() bool {
		cmd := exec.Command("systemd-cat", "-t", tag, "-p", "warning")
		cmd.Stdin = strings.NewReader(msg + "\n")
		require.NoError(t, cmd.Run())
		return outputMessages(t, outFile)[msg] > 0
	}, 30*time.Second, 500*time.Millisecond, "agent: %s", p.output())
	data, err := os.ReadFile(outFile)
	require.NoError(t, err)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(bytes.SplitN(data, []byte("\n"), 2)[0], &rec))
	require.Equal(t, tag, rec["SYSLOG_IDENTIFIER"])
	require.Equal(t, "4", rec["PRIORITY"])
	require.NotEmpty(t, rec["__CURSOR"])
	require.NotEmpty(t, rec["_PID"])
	_, err = time.Parse(time.RFC3339Nano, rec["__REALTIME_TIMESTAMP"].(string))
	require.NoError(t, err)

	// A value that is not UTF-8 comes in journalctl's binary form and
	// leaves as base64.
	write := func(line string) {
		cmd := exec.Command("systemd-cat", "-t", tag)
		cmd.Stdin = strings.NewReader(line + "\n")
		require.NoError(t, cmd.Run())
	}
	bin := "bad \xff byte"
	write(bin)
	want := []byte(`"MESSAGE":{"base64":"` + base64.StdEncoding.EncodeToString([]byte(bin)) + `"}`)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(outFile)
		return bytes.Contains(b, want)
	}, 30*time.Second, 20*time.Millisecond, "agent: %s", p.output())
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	require.Equal(t, 0, p.wait(t, 30*time.Second), p.output())

	// Written while the agent is down: the restart resumes after the
	// checkpointed (real) cursor and sends it, and nothing twice.
	write("while down")
	p = startAgent(t, "run", "-c", cfgPath)
	require.Eventually(t, func() bool { return outputMessages(t, outFile)["while down"] == 1 }, 30*time.Second, 20*time.Millisecond, "agent: %s", p.output())
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	require.Equal(t, 0, p.wait(t, 30*time.Second), p.output())
	b, err := os.ReadFile(outFile)
	require.NoError(t, err)
	require.Equal(t, 1, bytes.Count(b, want), "the binary entry once")
	for m, n := range outputMessages(t, outFile) {
		if m != msg { // written until one arrived: several entries
			require.Equal(t, 1, n, "%q delivered %d times", m, n)
		}
	}
}
