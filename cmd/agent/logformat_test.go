package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// log.format auto: JSON when stderr is the journal's stream (JOURNAL_STREAM
// names its device:inode), text otherwise; durations are strings in both.
func TestNewLogger_AutoIsJSONUnderTheJournalOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stderr")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	dev, ino, ok := fileDevIno(f)
	require.True(t, ok)

	logLine := func(journal string) string {
		t.Setenv("JOURNAL_STREAM", journal)
		require.NoError(t, f.Truncate(0))
		_, err := f.Seek(0, 0)
		require.NoError(t, err)
		newLogger(f, "info", "auto").With("component", "sender").Info("retrying", "retry_in", 1500*time.Millisecond)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}

	line := logLine(dev + ":" + ino)
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
	require.Equal(t, "1.5s", rec["retry_in"])
	require.Equal(t, "sender", rec["component"])

	for _, other := range []string{"", dev + ":" + ino + "0", "garbage"} {
		line = logLine(other)
		require.True(t, strings.HasPrefix(line, "time="), "text when %q: %s", other, line)
		require.Contains(t, line, "retry_in=1.5s")
	}
}
