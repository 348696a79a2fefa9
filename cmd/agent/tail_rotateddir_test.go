package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// agent tail --rotated-dir DIR is the file source's rotated_dirs: stopped
// after reading lines [0, 100), the application writes [100, 200) and
// logrotate (olddir old, compress, no delaycompress) moves the file into
// old/app.log.1.gz; the new app.log holds [200, 250). The next run of the
// same command with --rotated-dir old (relative to the file's directory,
// as logrotate's olddir) finds the rest of the file there: every line
// arrives once. The flag is repeatable, refuses a pattern and an empty
// value, and only applies to files.
func TestTail_RotatedDir_FindsRotationsInOlddir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	old := filepath.Join(logDir, "old")
	require.NoError(t, os.MkdirAll(old, 0o755))
	log := filepath.Join(logDir, "app.log")
	state := filepath.Join(dir, "state")
	const size = 60
	writeLog(t, log, 0, 100, size)
	out, errOut, code := runBin(t, "tail", "--once", "--state-dir", state, log)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 100, strings.Count(out, "\n"), out)

	writeLog(t, log, 100, 200, size)
	require.NoError(t, os.Rename(log, filepath.Join(old, "app.log.1")))
	gzipFile(t, filepath.Join(old, "app.log.1"))
	writeLog(t, log, 200, 250, size)

	out, errOut, code = runBin(t, "tail", "--once", "--state-dir", state, log, "--rotated-dir", "elsewhere", "--rotated-dir", "old")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var want []string
	for i := 100; i < 250; i++ {
		want = append(want, strings.TrimSuffix(string(numberedLine(nil, i, size)), "\n"))
	}
	require.Equal(t, want, lines, errOut) // the rotation's rest, then the new file

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{log, "--rotated-dir", "old/*"}, `invalid value "old/*" for flag -rotated-dir: a directory, not a pattern`},
		{[]string{log, "--rotated-dir", ""}, `invalid value "" for flag -rotated-dir: empty directory`},
		{[]string{"-", "--rotated-dir", "old"}, "agent tail: --rotated-dir applies to files; the inputs here are standard input"},
	} {
		_, errOut, code := runBin(t, append([]string{"tail"}, tc.args...)...)
		require.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		require.Equal(t, tc.want, strings.SplitN(errOut, "\n", 2)[0], "%v", tc.args)
	}
	out, _, code = runBin(t, "tail", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "-rotated-dir DIR")
}

// --rotated-dir follows the rule of rotated_dirs in a config file (agent
// validate): a path that is a file (or under one) is refused before
// anything is read; a directory that does not exist (yet) is a warning and
// the run goes on. Before, both were taken silently and the rotations were
// never found.
func TestTail_RotatedDir_NotADirectoryIsRefusedMissingWarns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 3, 20)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x\n"), 0o600))

	out, errOut, code := runBin(t, "tail", "--once", log, "--rotated-dir", "notes.txt")
	require.Equal(t, 2, code, errOut)
	require.Empty(t, out)
	require.Equal(t, `agent tail: --rotated-dir notes.txt: "notes.txt" (DIR/notes.txt) is not a directory: rotations are looked for in a directory (logrotate's olddir); name one`,
		strings.ReplaceAll(strings.TrimSuffix(errOut, "\n"), dir, "DIR"))

	_, errOut, code = runBin(t, "tail", "--once", log, "--rotated-dir", filepath.Join(dir, "notes.txt", "old"))
	require.Equal(t, 2, code, errOut)
	require.Contains(t, strings.ReplaceAll(errOut, dir, "DIR"), "DIR/notes.txt/old is under a file, not a directory")

	out, errOut, code = runBin(t, "tail", "--once", log, "--rotated-dir", "archive")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 3, strings.Count(out, "\n"), out)
	require.Contains(t, strings.ReplaceAll(errOut, dir, "DIR"),
		`agent tail: --rotated-dir archive: warning: no directory "archive" (DIR/archive) (yet): rotations are looked for there once it exists (logrotate makes its olddir only with createolddir)`)
}
