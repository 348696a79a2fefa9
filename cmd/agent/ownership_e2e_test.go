//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An operator runs the agent by hand as root in the packaged service's
// state directory (owned by the service's user): it warns at start that
// the files it makes will be root's, naming the owner and what to run
// instead. The service's user then fails on those files: the error says
// whose they are and how to give them back, not only "permission denied".
// agent tail --state-dir and agent dead-letter replay as root warn the
// same way. Needs root (it runs
// the agent as nobody).
func TestRun_AsRootInAnotherUsersStateDir_WarnsThenTheOwnersRunSaysWhy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the agent as root and as nobody")
	}
	t.Parallel()
	const nobody = 65534
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir, filepath.Dir(agentBin)} {
		require.NoError(t, os.Chmod(d, 0o755))
	}
	state := filepath.Join(dir, "state")
	require.NoError(t, os.Mkdir(state, 0o750))
	require.NoError(t, os.Chown(state, nobody, nobody))
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 10, 60)
	cfg := writeConfig(t, dir, fmt.Sprintf(`state_dir: %s
admin: {listen: "off"}
sources:
  - name: files
    type: file
    file: {include: [%s]}
outputs:
  - name: out
    type: blackhole
flows:
  - name: f
    sources: [files]
    output: out
`, state, log))
	require.NoError(t, os.Chmod(cfg, 0o644))

	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return strings.Contains(p.output(), "agent running") }, "the agent did not start")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
	require.Contains(t, p.output(), "running as root in a state_dir that belongs to another user")
	require.Contains(t, p.output(), "give_back=\"chown -R nobody: "+state+"\"")
	require.Contains(t, p.output(), "instead=\"sudo -u nobody agent run -c "+cfg+"\"")

	// agent tail as root with that state_dir warns the same way.
	_, errOut, code := runBin(t, "tail", "--once", log, "--to", "blackhole:", "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "running as root in a state_dir that belongs to another user")

	cmd := agentCmd("run", "-c", cfg)
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	// Found as the configuration loads (as validate finds it), before
	// anything starts: exit 2, each file named.
	require.Equal(t, 2, cmd.ProcessState.ExitCode(), "%s", out)
	require.NotContains(t, string(out), "running as root")
	require.Regexp(t, `state_dir: the checkpoint lock file \S+ is not writable: permission denied; it belongs to root \(uid 0\), not to nobody \(uid 65534\), `+
		`the user the agent runs as; if the agent \(or agent dead-letter replay\) was run as root by hand, give the state back: chown -R nobody: `+state, string(out))

	// agent dead-letter replay as root there warns the same way (it
	// rewrites the dead-letter files, root's then), naming itself.
	dl := filepath.Join(state, "dead-letter.ndjson")
	require.NoError(t, os.WriteFile(dl, []byte(`{"time":"2026-01-01T00:00:00Z","flow":"f","reason":"400 bad","data":"aGk=","text":"hi"}`+"\n"), 0o600))
	require.NoError(t, os.Chown(dl, nobody, nobody))
	_, errOut, code = runBin(t, "dead-letter", "replay", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "1 delivered")
	require.Contains(t, errOut, "running as root in a state_dir that belongs to another user")
	require.Contains(t, errOut, "instead=\"sudo -u nobody agent dead-letter replay -c "+cfg+"\"")
	require.Contains(t, errOut, "give_back=\"chown -R nobody: "+state+"\"")

	// The files the replay left are root's: the owner's run says whose
	// and how to give them back (it said only "permission denied").
	cmd = agentCmd("run", "-c", cfg)
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	require.Regexp(t, `dead-letter[a-z ]* file \S+ is not writable: permission denied; it belongs to root \(uid 0\), not to nobody \(uid 65534\), `+
		`the user the agent runs as; if the agent \(or agent dead-letter replay\) was run as root by hand, give the state back: chown -R nobody: `+state, string(out))
}
