package file

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A file closed (close_inactive; the same happens when max_open_files
// makes a caught-up file yield its descriptor) while its multiline record
// is still pending is copytruncated. Without birth times the reopen sees a
// fingerprint mismatch and takes the inode for a new file: the line "S a1",
// read but not emitted yet, is emitted (under the old FileID) before the old
// file is forgotten.
func TestReborn_PendingMultilineIsFlushed(t *testing.T) {
	withoutBirthTime(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "S a1\n")
	cfg := testConfig(dir, "a.log")
	cfg.CloseInactive = 100 * time.Millisecond
	cfg.Multiline = &MultilineConfig{Start: `^S`, Timeout: time.Hour}
	r := start(t, cfg, Settings{})
	waitCaughtUp(t, r.src, p)
	require.Eventually(t, func() bool {
		fs := r.src.Files()
		return len(fs) == 1 && fs[0].State == "idle"
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, os.WriteFile(p, []byte("S new1\nS new2\n"), 0o644)) // copytruncate + new lines
	r.waitCount(t, 2)                                                      // "S a1", "S new1"
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, r.halt(t))
	require.Equal(t, "S a1", r.col.lines()[0], "the old file's record comes first")
}

// The same without multiline: the partial last line read before the file
// was closed (flush_partial_after longer than close_inactive) is emitted.
func TestReborn_PendingPartialLineIsFlushed(t *testing.T) {
	withoutBirthTime(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "partial")
	cfg := testConfig(dir, "a.log")
	cfg.CloseInactive = 100 * time.Millisecond
	cfg.FlushPartialAfter = time.Hour
	r := start(t, cfg, Settings{})
	waitCaughtUp(t, r.src, p)
	require.Eventually(t, func() bool {
		fs := r.src.Files()
		return len(fs) == 1 && fs[0].State == "idle"
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, os.WriteFile(p, []byte("new1\nnew2\n"), 0o644))
	r.waitCount(t, 2)
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"partial", "new1", "new2"}, r.col.lines())
}
