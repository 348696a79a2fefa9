package file

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// Some tests run in a child process: the test binary again, with
// childRoleEnv naming what it does. A descriptor limit or another user id
// is a property of the whole process; setting it in the test process would
// break the tests that run next to it.
const (
	childRoleEnv = "FILESRC_TEST_CHILD_ROLE"
	childDirEnv  = "FILESRC_TEST_CHILD_DIR"
)

// runChild runs a child role and returns the process's exit code. A role
// prints its findings to stdout and its log to stderr.
func runChild(role string) int {
	dir := os.Getenv(childDirEnv)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var err error
	switch role {
	case "fdlimit":
		err = childFDLimit(dir, log)
	case "chmod":
		err = chmodScenario(dir, os.Stderr)
	case "listdir":
		err = unlistableScenario(dir, os.Stderr)
	default:
		err = fmt.Errorf("unknown child role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// startChild runs the test binary as a child in role, with cred (nil: as
// this process) and returns its stdout; the test fails when the child does.
func runChildProcess(t *testing.T, bin, role, dir string, cred *syscall.Credential) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childRoleEnv+"="+role, childDirEnv+"="+dir)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = t.Output()
	err := cmd.Run()
	require.NoError(t, err, "child %s failed; its stdout:\n%s", role, out.String())
	return out.String()
}

// copyTestBinary copies the test binary into a directory every user may
// read, so that a child can run as another user (the go tool builds it
// under a directory only its owner can enter).
func copyTestBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "filesrc-bin-") // not under t.TempDir's parent: only its owner may enter that
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	src, err := os.Open(os.Args[0])
	require.NoError(t, err)
	defer src.Close()
	bin := filepath.Join(dir, "file.test")
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
	return bin
}
