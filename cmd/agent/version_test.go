package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVersion_PrintsTheStampedCommitAndDate(t *testing.T) {
	oldCommit, oldDate := commit, date
	t.Cleanup(func() { commit, date = oldCommit, oldDate })
	commit, date = "0123456789ab", "2026-12-06T07:00:00Z"

	var out, errOut bytes.Buffer
	require.Equal(t, exitOK, run([]string{"version"}, strings.NewReader(""), &out, &errOut))
	lines := strings.Split(out.String(), "\n")
	require.Equal(t, "agent "+version, lines[0])
	require.Equal(t, "commit: 0123456789ab", lines[1])
	require.Equal(t, "built: 2026-12-06T07:00:00Z", lines[2])
	require.True(t, strings.HasPrefix(lines[3], "go: "), out.String())
	require.True(t, strings.HasPrefix(lines[4], "sources: "), out.String())
	require.Empty(t, errOut.String())
}

// agent version with an argument or a flag it does not know is a usage
// error, as for the other commands (it printed the version and exited 0).
func TestVersion_UnexpectedArgumentsAreUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"version", "extra"}, `agent version: unexpected argument "extra"; agent version takes none`},
		{[]string{"version", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"--version", "a", "b"}, `agent version: unexpected argument "a" (and 1 more)`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := runBin(t, tc.args...)
			require.Equal(t, exitUsage, code, errOut)
			require.Contains(t, errOut, tc.want)
			require.Empty(t, out)
		})
	}
	out, errOut, code := runBin(t, "version")
	require.Equal(t, exitOK, code, errOut)
	require.True(t, strings.HasPrefix(out, "agent "), out)
}
