package file

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A line cut to max_record_bytes lost its end with only a counter to say
// it: the source now logs it at WARN, with the file, the limit and the
// line's size, once a minute at most (not once per line).
func TestTruncatedLine_IsLoggedOnceAMinute(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	long := strings.Repeat("x", 100)
	writeFile(t, p, "short\n"+long+"\n"+long+"y\nend\n")
	cfg := testConfig(dir, "*.log")
	cfg.MaxRecordBytes = 20
	log, buf := testLogger()
	r := start(t, cfg, Settings{Name: "app", Logger: log})
	r.waitCount(t, 4)
	require.Equal(t, uint64(2), r.src.Stats().TruncatedRecords)

	out := buf.String()
	require.Equal(t, 1, strings.Count(out, "longer than max_record_bytes was truncated"), out)
	require.Contains(t, out, "level=WARN")
	require.Contains(t, out, "path="+p)
	require.Contains(t, out, "max_record_bytes=20")
	require.Contains(t, out, "line_bytes=101", "the first long line, its newline included")
	require.Contains(t, out, "kept_bytes=20")
}
