package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// nobody is the user the tests run the agent as when they run as root,
// which ignores permission bits.
const nobody = 65534

// runBinAs is runBin as the user uid (0: as the test's user), with bin as
// the agent binary.
func runBinAs(t *testing.T, bin string, uid uint32, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = childAttr()
	if uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid}
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// A state_dir the agent cannot create or write in passed validate, and
// run then exited 1 at start. validate now says so, as run does (both
// load the file the same way), without creating anything: under a
// regular file, under a read-only directory, or read-only itself. A
// directory that only another user may write is a warning: validate may
// run as someone else than the service.
func TestValidate_StateDirTheAgentCannotCreateFailsAsRunDoes(t *testing.T) {
	t.Parallel()
	// Run as nobody when root: the binary, the config and the directories
	// must be reachable by that user.
	uid := uint32(0)
	if os.Geteuid() == 0 {
		uid = nobody
	}
	base, err := os.MkdirTemp("", "agent-statedir-")
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = filepath.Walk(base, func(p string, _ os.FileInfo, _ error) error { return os.Chmod(p, 0o755) })
		os.RemoveAll(base)
	})
	require.NoError(t, os.Chmod(base, 0o755))
	bin := filepath.Join(base, "agent")
	copyFile(t, agentBin, bin, 0o755)
	own := func(p string) {
		if uid != 0 {
			require.NoError(t, os.Chown(p, int(uid), int(uid)))
		}
	}
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	ro := filepath.Join(base, "ro")
	require.NoError(t, os.Mkdir(ro, 0o755))
	own(ro)
	require.NoError(t, os.Mkdir(filepath.Join(ro, "state"), 0o755))
	own(filepath.Join(ro, "state"))
	require.NoError(t, os.Chmod(filepath.Join(ro, "state"), 0o555))
	require.NoError(t, os.Chmod(ro, 0o555))

	for _, tc := range []struct {
		name, stateDir, want string
		warn                 bool
	}{
		{name: "under_a_regular_file", stateDir: filepath.Join(file, "state"), want: file + " is not a directory"},
		{name: "under_a_read_only_directory", stateDir: filepath.Join(ro, "new"),
			want: "cannot create " + filepath.Join(ro, "new") + ": " + ro + " is not writable: permission denied"},
		{name: "read_only_itself", stateDir: filepath.Join(ro, "state"),
			want: filepath.Join(ro, "state") + " is not writable: permission denied"},
		{name: "another_users_directory", stateDir: "/agent-statedir-test-missing/state", warn: true,
			want: "warning: cannot create /agent-statedir-test-missing/state: / is not writable by this user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(base, tc.name+".yaml")
			require.NoError(t, os.WriteFile(cfg, []byte(`state_dir: `+tc.stateDir+`
sources:
  - name: app
    type: file
    file: {include: [`+base+`/*.log]}
outputs:
  - name: out
    type: blackhole
flows:
  - name: main
    sources: [app]
    output: out
`), 0o644))
			out, errOut, code := runBinAs(t, bin, uid, "validate", "-c", cfg)
			if tc.warn {
				require.Equal(t, 0, code, errOut)
				require.Contains(t, out, cfg+": ok")
				require.Contains(t, errOut, cfg+":1: state_dir: "+tc.want)
				return
			}
			require.Equal(t, 2, code, "stdout: %s\nstderr: %s", out, errOut)
			require.Equal(t, cfg+":1: state_dir: "+tc.want+"\n", errOut, "said once, with file and line")
			_, runErr, code := runBinAs(t, bin, uid, "run", "-c", cfg)
			require.Equal(t, 2, code)
			require.Equal(t, errOut, runErr, "run says what validate said")
			_, err := os.Stat(tc.stateDir)
			if tc.name != "read_only_itself" {
				require.Error(t, err, "nothing was created")
			}
		})
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	// An executable is linked when it can be: a copy has a write
	// descriptor open, and a child another parallel test forks in that
	// moment inherits it until its exec, so exec'ing the copy could fail
	// with ETXTBSY ("text file busy").
	if mode&0o111 != 0 {
		if fi, err := os.Stat(from); err == nil && fi.Mode().Perm() == mode.Perm() && os.Link(from, to) == nil {
			return
		}
	}
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

// The dead-letter file and its lock live in state_dir, and are appended to
// only when the first record is dead-lettered: one the agent cannot write
// (left by an agent run once with sudo, made read-only, a directory in its
// place) passed validate and run, and records failed to be dead-lettered
// later. validate now says so, as run does, with the rules of state_dir:
// another user's file in a directory this user may not write either is a
// warning (validate may run as someone else than the service).
func TestValidate_DeadLetterFileTheAgentCannotWriteFailsAsRunDoes(t *testing.T) {
	t.Parallel()
	uid := uint32(0)
	if os.Geteuid() == 0 {
		uid = nobody
	}
	base, err := os.MkdirTemp("", "agent-dlq-")
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = filepath.Walk(base, func(p string, _ os.FileInfo, _ error) error { return os.Chmod(p, 0o755) })
		os.RemoveAll(base)
	})
	require.NoError(t, os.Chmod(base, 0o755))
	bin := filepath.Join(base, "agent")
	copyFile(t, agentBin, bin, 0o755)
	own := func(p string) {
		if uid != 0 {
			require.NoError(t, os.Chown(p, int(uid), int(uid)))
		}
	}
	stateDir := func(name string) string {
		d := filepath.Join(base, name)
		require.NoError(t, os.Mkdir(d, 0o755))
		own(d)
		return d
	}
	type tc struct {
		name, stateDir, want string
		warn                 bool
	}
	var cases []tc
	d := stateDir("dir_in_its_place")
	require.NoError(t, os.Mkdir(filepath.Join(d, "dead-letter.ndjson"), 0o755))
	cases = append(cases, tc{name: "a directory in its place", stateDir: d,
		want: "the dead-letter file " + filepath.Join(d, "dead-letter.ndjson") + " is not a regular file"})
	d = stateDir("read_only")
	p := filepath.Join(d, "dead-letter.ndjson")
	require.NoError(t, os.WriteFile(p, []byte("{}\n"), 0o444))
	own(p)
	cases = append(cases, tc{name: "read-only", stateDir: d,
		want: "the dead-letter file " + p + " is not writable: permission denied"})
	d = stateDir("lock_read_only")
	p = filepath.Join(d, "dead-letter.lock")
	require.NoError(t, os.WriteFile(p, nil, 0o400))
	own(p)
	cases = append(cases, tc{name: "lock read-only", stateDir: d,
		want: "the dead-letter lock file " + p + " is not writable: permission denied"})
	if uid != 0 {
		// As root the test can leave files of another user (root) for
		// the agent's user (nobody).
		d = stateDir("left_by_sudo")
		p = filepath.Join(d, "dead-letter.ndjson")
		require.NoError(t, os.WriteFile(p, []byte("{}\n"), 0o600)) // root's
		// Whose it is and how to give it back, not only "permission denied".
		cases = append(cases, tc{name: "another user's file in the agent's directory", stateDir: d,
			want: "the dead-letter file " + p + " is not writable: permission denied; it belongs to root (uid 0), not to nobody (uid 65534), " +
				"the user the agent runs as; if the agent (or agent dead-letter replay) was run as root by hand, give the state back: chown -R nobody: " + d})
		d = filepath.Join(base, "service_state")
		require.NoError(t, os.Mkdir(d, 0o755)) // root's: the service's user
		p = filepath.Join(d, "dead-letter.ndjson")
		require.NoError(t, os.WriteFile(p, []byte("{}\n"), 0o600))
		cases = append(cases, tc{name: "another user's file in another user's directory", stateDir: d, warn: true,
			want: "warning: the dead-letter file " + p + " is not writable by this user"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(base, filepath.Base(tc.stateDir)+".yaml")
			require.NoError(t, os.WriteFile(cfg, []byte(`state_dir: `+tc.stateDir+`
sources:
  - name: app
    type: file
    file: {include: [`+base+`/*.log]}
outputs:
  - name: out
    type: blackhole
flows:
  - name: main
    sources: [app]
    output: out
`), 0o644))
			out, errOut, code := runBinAs(t, bin, uid, "validate", "-c", cfg)
			if tc.warn {
				require.Equal(t, 0, code, errOut)
				require.Contains(t, out, cfg+": ok")
				require.Contains(t, errOut, cfg+":1: state_dir: "+tc.want)
				return
			}
			require.Equal(t, 2, code, "stdout: %s\nstderr: %s", out, errOut)
			require.Equal(t, cfg+":1: state_dir: "+tc.want+"\n", errOut, "said once, with file and line")
			_, runErr, code := runBinAs(t, bin, uid, "run", "-c", cfg)
			require.Equal(t, 2, code)
			require.Equal(t, errOut, runErr, "run says what validate said")
		})
	}
}

// A run as root by hand in the service user's state_dir leaves
// checkpoints.json, its lock and spool/ to root. validate as that user said
// "ok" (with only a warning for spool/) and run then failed at start on the
// checkpoint lock. validate (and run, loading the same way) now names each
// and how to give the state back; a checkpoint file the user cannot read is
// said as such (it is replaced by a rename, so a read-only one of the
// user's own passes). validate as root, which may write everything, warns
// about the files whose owner is not state_dir's.
func TestValidate_StateLeftByARootRunFailsAsRunDoes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: leaves files of two users")
	}
	base, err := os.MkdirTemp("", "agent-rootleft-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	bin := filepath.Join(base, "agent")
	copyFile(t, agentBin, bin, 0o755)
	config := func(stateDir string) string {
		cfg := filepath.Join(base, filepath.Base(stateDir)+".yaml")
		require.NoError(t, os.WriteFile(cfg, []byte(`state_dir: `+stateDir+`
sources:
  - name: app
    type: file
    file: {include: [`+base+`/*.log]}
outputs:
  - name: out
    type: blackhole
flows:
  - name: main
    sources: [app]
    output: out
`), 0o644))
		return cfg
	}

	d := filepath.Join(base, "left")
	require.NoError(t, os.Mkdir(d, 0o755))
	require.NoError(t, os.Chown(d, nobody, nobody))
	require.NoError(t, os.WriteFile(filepath.Join(d, "checkpoints.json"), []byte(`{"version":1,"sources":{}}`), 0o600)) // root's
	require.NoError(t, os.WriteFile(filepath.Join(d, "checkpoints.json.lock"), nil, 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(d, "spool", "main"), 0o700))
	cfg := config(d)
	hint := "it belongs to root (uid 0), not to nobody (uid 65534), the user the agent runs as; " +
		"if the agent (or agent dead-letter replay) was run as root by hand, give the state back: chown -R nobody: " + d
	out, errOut, code := runBinAs(t, bin, nobody, "validate", "-c", cfg)
	require.Equal(t, 2, code, "stdout: %s\nstderr: %s", out, errOut)
	require.Contains(t, errOut, cfg+": spool.dir: "+filepath.Join(d, "spool")+" is not writable: permission denied; "+hint+"\n")
	require.Contains(t, errOut, cfg+":1: state_dir: the checkpoint file "+filepath.Join(d, "checkpoints.json")+" is not readable: permission denied; "+hint+"\n")
	require.Contains(t, errOut, cfg+":1: state_dir: the checkpoint lock file "+filepath.Join(d, "checkpoints.json.lock")+" is not writable: permission denied; "+hint+"\n")
	_, runErr, code := runBinAs(t, bin, nobody, "run", "-c", cfg)
	require.Equal(t, 2, code)
	require.Equal(t, errOut, runErr, "run says what validate said")

	// As root: a warning (the service may run as another user), exit 0.
	out, errOut, code = runBinAs(t, bin, 0, "validate", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, cfg+": ok")
	require.Contains(t, errOut, cfg+":1: state_dir: warning: "+filepath.Join(d, "checkpoints.json")+", "+filepath.Join(d, "checkpoints.json.lock")+", "+
		filepath.Join(d, "spool")+" belong to root (uid 0), but "+d+" to nobody (uid 65534)")
	require.Contains(t, errOut, "give the state back: chown -R nobody: "+d)

	// Given back, with a read-only checkpoint file of the user's own (the
	// agent renames a new one over it): no problem, and no warning as root.
	require.NoError(t, filepath.Walk(d, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, nobody, nobody)
	}))
	require.NoError(t, os.Chmod(filepath.Join(d, "checkpoints.json"), 0o444))
	for _, uid := range []uint32{nobody, 0} {
		out, errOut, code = runBinAs(t, bin, uid, "validate", "-c", cfg)
		require.Equal(t, 0, code, errOut)
		require.Equal(t, cfg+": ok\n", out)
		require.Empty(t, errOut)
	}
}
