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
