package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Issue 8.3, end to end: far more files than descriptors under a low
// `ulimit -n`, with the default max_open_files (1024) above it. The file
// source must leave descriptors for the sender's connections and the spool,
// and read every line of every file: every line arrives.
func TestTailOnce_ManyFilesUnderLowUlimit_AllLinesArrive(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatalf("sh is needed to lower the descriptor limit: %v", err)
	}
	const files, perFile = 2000, 5
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	require.NoError(t, os.Mkdir(logs, 0o755))
	var buf []byte
	for i := range files {
		buf = buf[:0]
		for n := i * perFile; n < (i+1)*perFile; n++ {
			buf = numberedLine(buf, n, 60)
		}
		require.NoError(t, os.WriteFile(filepath.Join(logs, "f"+itoa4(i)+".log"), buf, 0o644))
	}
	s := newSink(t)
	// The shell lowers both limits (Go would raise a lower soft limit to
	// the hard one) and then becomes the agent.
	p := startCommand(t, "sh", "-c", `ulimit -n 256 && exec "$0" "$@"`, agentBin,
		"tail", filepath.Join(logs, "*.log"), "--once", "--to", s.URL(),
		"--state-dir", filepath.Join(dir, "state"), "--gzip=false")
	require.Equal(t, 0, p.wait(t, 2*time.Minute), tail(p.stderr.String(), 8000))
	requireAllArrived(t, s, files*perFile, false)
	require.NotContains(t, p.stderr.String(), "too many open files")
}

// startCommand is startAgent for another command (one that runs the agent).
func startCommand(t *testing.T, name string, args ...string) *agentProc {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &syncWriter{w: &stderr}
	cmd.Stdout = &syncWriter{w: &stderr}
	require.NoError(t, cmd.Start())
	p := &agentProc{cmd: cmd, stderr: &stderr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func itoa4(i int) string {
	b := []byte{'0', '0', '0', '0'}
	for k := 3; k >= 0 && i > 0; k-- {
		b[k] = byte('0' + i%10)
		i /= 10
	}
	return string(b)
}
