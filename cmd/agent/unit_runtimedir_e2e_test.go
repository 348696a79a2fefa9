//go:build linux

package main

import (
	"bytes"
	"fmt"
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

// Under the packaged unit the agent's unix sockets live in its
// RuntimeDirectory (/run/agent, README's example), made by systemd with
// RuntimeDirectoryMode and owned by the agent's user. A socket source's
// mode and group say who may write to it; the directory must let them
// reach it. Here the directory is made as systemd would (the unit's mode,
// owned by the agent's user), the agent runs as nobody with a
// supplementary group, and a client of that group only (another user)
// writes a line that must arrive. Needs root (it runs processes as other
// users).
func TestServiceUnit_RuntimeDirectoryLetsTheSocketsGroupConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the agent and a client as other users")
	}
	t.Parallel()
	unit, err := os.ReadFile(filepath.Join("..", "..", "packaging", "agent.service"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^RuntimeDirectoryMode=([0-7]+)$`).FindSubmatch(unit)
	require.NotNil(t, m, "packaging/agent.service has no RuntimeDirectoryMode=")
	mode, err := strconv.ParseUint(string(m[1]), 8, 32)
	require.NoError(t, err)

	const agentUID, clientUID, group = 65534, 1, 4242 // nobody, daemon, a group of neither
	dir := t.TempDir()
	self, err := os.Executable()
	require.NoError(t, err)
	for _, d := range []string{filepath.Dir(dir), dir, filepath.Dir(agentBin)} {
		require.NoError(t, os.Chmod(d, 0o755))
	}
	run := filepath.Join(dir, "run-agent") // /run/agent
	require.NoError(t, os.Mkdir(run, 0o700))
	require.NoError(t, os.Chmod(run, os.FileMode(mode)))
	require.NoError(t, os.Chown(run, agentUID, agentUID))
	state := filepath.Join(dir, "state") // /var/lib/agent
	require.NoError(t, os.Mkdir(state, 0o750))
	require.NoError(t, os.Chown(state, agentUID, agentUID))
	out := filepath.Join(dir, "out")
	require.NoError(t, os.Mkdir(out, 0o755))
	require.NoError(t, os.Chown(out, agentUID, agentUID))
	sock := filepath.Join(run, "app.sock")
	cfg := writeConfig(t, dir, fmt.Sprintf(`state_dir: %s
admin: {listen: "off"}
sources:
  - name: app
    type: socket
    socket: {listen: "unix://%s", mode: "0660", group: "%d"}
outputs:
  - name: out
    type: file
    file: {dir: %s}
flows:
  - name: f
    sources: [app]
    output: out
`, state, sock, group, out))
	require.NoError(t, os.Chmod(cfg, 0o644))

	cmd := agentCmd("run", "-c", cfg)
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: agentUID, Gid: agentUID, Groups: []uint32{group}}
	p := startCmd(t, cmd)
	p.waitFor(t, time.Minute, func() bool { return strings.Contains(p.output(), "msg=listening") }, "the socket source does not listen")

	// The client is this test binary, copied where the other user may run it.
	clientBin := filepath.Join(dir, "client")
	copyFile(t, self, clientBin, 0o755)
	client := exec.Command(clientBin)
	client.Env = append(os.Environ(), unixWriteEnv+"="+sock)
	client.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: clientUID, Gid: group, Groups: []uint32{}}}
	b, err := client.CombinedOutput()
	require.NoError(t, err, "a client of the socket's group could not write to %s (in a directory of mode %o): %s", sock, mode, b)
	require.Empty(t, string(b))
	p.waitFor(t, time.Minute, func() bool {
		got, _ := exec.Command("sh", "-c", "cat "+out+"/*").Output()
		return strings.Contains(string(got), "a line from another user")
	}, "the client's line did not arrive")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// startCmd is startAgent for a prepared agentCmd.
func startCmd(t *testing.T, cmd *exec.Cmd) *agentProc {
	t.Helper()
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
