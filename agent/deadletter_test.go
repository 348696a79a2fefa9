package agent

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// readDeadLetters reads every record of a state directory's dead-letter
// files, in order.
func readDeadLetters(t *testing.T, dir string) []DeadLetterRecord {
	t.Helper()
	parts, err := DeadLetterFiles(dir)
	require.NoError(t, err)
	var out []DeadLetterRecord
	for _, p := range parts {
		f, err := os.Open(p.Path)
		require.NoError(t, err)
		_, err = f.Seek(p.Offset, 0)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r DeadLetterRecord
			require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
			out = append(out, r)
		}
		require.NoError(t, f.Close())
	}
	return out
}

func TestDeadLetter_RotatesAtMaxBytesKeepsMaxFilesThenDropsAndCounts(t *testing.T) {
	dir := t.TempDir()
	m := newMetrics()
	d := openDeadLetter(dir)
	t.Cleanup(func() { _ = d.close() })
	d.configure(DeadLetterConfig{MaxBytes: 2 << 10, MaxFiles: 2}, m, nil)

	data := []byte(strings.Repeat("x", 300)) // ~0.5 KiB a line with its base64
	written := 0
	for i := 0; i < 40; i++ {
		require.NoError(t, d.writeRecord("f", "o", "rejected", "pk", "", data))
		written++
	}
	rotated, err := rotatedFiles(dir)
	require.NoError(t, err)
	require.Len(t, rotated, 2, "max_files rotated files are kept")
	var total int64
	for _, n := range append(rotated, DeadLetterFile) {
		st, err := os.Stat(filepath.Join(dir, n))
		require.NoError(t, err)
		require.LessOrEqual(t, st.Size(), int64(2<<10), n)
		total += st.Size()
	}
	kept := len(readDeadLetters(t, dir))
	require.Positive(t, kept)
	require.Less(t, kept, written)
	dropped := testutil.ToFloat64(m.dropped.WithLabelValues("f", "dead_letter_full"))
	require.Equal(t, float64(written-kept), dropped, "every record not kept is counted as dropped")
	require.Equal(t, int64(written), d.count.Load(), "--once still reports them as not delivered")
}

func TestDeadLetter_OversizedWriteGoesAloneIntoAFreshFile(t *testing.T) {
	dir := t.TempDir()
	d := openDeadLetter(dir)
	t.Cleanup(func() { _ = d.close() })
	d.configure(DeadLetterConfig{MaxBytes: 1 << 10, MaxFiles: 1}, nil, nil)
	require.NoError(t, d.writeRecord("f", "o", "r", "", "", []byte("small")))
	require.NoError(t, d.writeRecord("f", "o", "r", "", "", []byte(strings.Repeat("y", 4<<10))))
	recs := readDeadLetters(t, dir)
	require.Len(t, recs, 2)
	require.Equal(t, "small", *recs[0].Text)
}

func TestDeadLetter_ReasonsAreRedacted(t *testing.T) {
	dir := t.TempDir()
	d := openDeadLetter(dir)
	t.Cleanup(func() { _ = d.close() })
	require.NoError(t, d.writeRecord("f", "o", `rejected: Post "https://u:s3cret@h/i?api_key=s3cret": 400`, "", "", []byte("x")))
	b, err := os.ReadFile(filepath.Join(dir, DeadLetterFile))
	require.NoError(t, err)
	require.NotContains(t, string(b), "s3cret")
	require.Contains(t, string(b), "api_key=REDACTED")
}

func TestCheckStateDir(t *testing.T) {
	empty := t.TempDir()
	require.ErrorContains(t, CheckStateDir(empty), "holds no agent state")
	require.ErrorContains(t, CheckStateDir(filepath.Join(empty, "nope")), "no such file")

	withSpool := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(withSpool, "spool"), 0o700))
	require.NoError(t, CheckStateDir(withSpool))

	withDL := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(withDL, DeadLetterFile), nil, 0o600))
	require.NoError(t, CheckStateDir(withDL))
}

func TestConfig_DeadLetterValidated(t *testing.T) {
	c := DefaultDeadLetterConfig()
	require.NoError(t, c.Validate())
	c.MaxBytes, c.MaxFiles = 10, -1
	err := c.Validate()
	require.ErrorContains(t, err, "max_bytes")
	require.ErrorContains(t, err, "max_files")
}
