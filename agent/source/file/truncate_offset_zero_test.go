package file

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A file whose checkpoint is at offset 0 (read, nothing committed yet) is
// copytruncated and rewritten while the agent is down. On restart the open
// sees the same birth time and another fingerprint: nothing of the old
// content counts as read, so the file is simply read from 0, and its
// fingerprint must be refreshed. With the old one kept (in memory and in the
// checkpoint), the next time the file is reopened (close_inactive,
// max_open_files turns, restart) the check would "detect" a truncation and
// read the whole file again under a new FileID: duplicates without any
// truncation.
func TestCopyTruncate_AtOffsetZeroRefreshesFingerprint(t *testing.T) {
	dir := t.TempDir()
	if !hasBirthTime(t, dir) {
		t.Skip("needs birth times")
	}
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "old-1\nold-2\n")
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	cfg := testConfig(dir, "a.log")
	cfg.FingerprintBytes = 4 // the file is longer than its fingerprint (as any file over 1 KiB)
	cfg.CloseInactive = 200 * time.Millisecond

	st := openStore(t, cpPath)
	src1, err := New(cfg, Settings{Name: "s", Checkpoints: st})
	require.NoError(t, err)
	r1 := startWith(t, src1, &collector{src: src1}) // never commits
	r1.waitCount(t, 2)
	require.NoError(t, r1.halt(t))
	require.NoError(t, st.Close())

	require.NoError(t, os.WriteFile(p, []byte("new-1\nnew-2\nnew-3\n"), 0o644)) // copytruncate while down

	st2 := openStore(t, cpPath)
	src2, err := New(cfg, Settings{Name: "s", Checkpoints: st2})
	require.NoError(t, err)
	r2 := startWith(t, src2, &collector{src: src2, commit: true})
	r2.waitCount(t, 3)
	time.Sleep(500 * time.Millisecond) // closed (close_inactive)
	appendFile(t, p, "new-4\n")        // reopened: identity checked again
	r2.waitCount(t, 4)
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, r2.halt(t))
	require.Equal(t, []string{"new-1", "new-2", "new-3", "new-4"}, r2.col.lines(), "stats %+v", src2.Stats())
	require.Zero(t, src2.Stats().Truncations)
}
