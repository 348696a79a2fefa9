package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// copytruncate with compress (no delaycompress) while the source runs but
// has not read the file's last lines yet (stuck in emit: backpressure):
// logrotate copies app.log to app.log.1, truncates app.log, compresses
// app.log.1 to app.log.1.gz and removes app.log.1, all before the source
// looks again. The unread lines are only in the compressed copy: it is
// found by the fingerprint of its decompressed first bytes and read from
// the read offset to its end, before the file's new content. An
// incomplete last line read before the truncation is read whole from the
// copy, as one record.
func TestCopyTruncate_WhileRunning_CompressedCopy_UnreadLinesRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kind    string
		rotated string
		olddirs []string
		partial bool // line 99 was incomplete when the source read it
	}{
		{name: "gzip", kind: ".gz", rotated: "app.log.1"},
		{name: "gzip dateext", kind: ".gz", rotated: "app.log-20261206"},
		{name: "bzip2", kind: ".bz2", rotated: "app.log.1"},
		{name: "xz", kind: ".xz", rotated: "app.log.1"},
		{name: "zstd", kind: ".zst", rotated: "app.log.1"},
		{name: "lz4", kind: ".lz4", rotated: "app.log.1"},
		{name: "gzip olddir", kind: ".gz", rotated: "old/app.log.1", olddirs: []string{"old"}},
		{name: "gzip partial last line", kind: ".gz", rotated: "app.log.1", partial: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			first := linesOf("a", 0, 100)
			if tc.partial {
				first = strings.TrimSuffix(first, "\n")
				first = first[:len(first)-10]
			}
			writeFile(t, p, first)
			cfg := testConfig(dir, "app.log")
			cfg.RotatedDirs = tc.olddirs
			log, logs := testLogger()
			src, err := New(cfg, Settings{Name: "s", Logger: log})
			require.NoError(t, err)
			col := &collector{src: src, commit: true, block: make(chan struct{}), blocked: make(chan struct{}, 1)}
			r := startWith(t, src, col)
			select {
			case <-col.blocked:
			case <-time.After(20 * time.Second):
				t.Fatal("nothing emitted")
			}
			// The source read app.log and is stuck emitting its first
			// line. (150 lines: what the bzip2 fixture holds.)
			all := linesOf("a", 0, 150)
			appendFile(t, p, all[len(first):])
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, all, string(data))
			rotated := filepath.Join(dir, tc.rotated)
			require.NoError(t, os.MkdirAll(filepath.Dir(rotated), 0o755))
			// Decoys: an older rotation of another version of the file,
			// one whose first bytes are the file's but shorter than the
			// read offset.
			writeFile(t, filepath.Join(dir, "app.log.5.gz"), string(compressAs(t, ".gz", []byte(linesOf("old", 0, 300)))))
			writeFile(t, filepath.Join(dir, "app.log.6.gz"), string(compressAs(t, ".gz", []byte(linesOf("a", 0, 60)))))
			require.NoError(t, os.Truncate(p, 0))
			writeFile(t, rotated+tc.kind, string(compressAs(t, tc.kind, data)))
			appendFile(t, p, linesOf("b", 150, 200))
			close(col.block)

			r.waitCount(t, 200)
			time.Sleep(300 * time.Millisecond) // nothing more comes
			require.NoError(t, r.halt(t))
			got := map[string]int{}
			var order []string
			for _, l := range col.lines() {
				stream, seq, ok := parseLine(l)
				require.True(t, ok, l)
				require.Contains(t, []string{"a", "b"}, stream, "a decoy's line: %s\n%s", l, logs)
				require.Equal(t, line(stream, seq), l, "a whole line")
				got[l]++
				order = append(order, stream)
			}
			for i := range 150 {
				require.Equal(t, 1, got[line("a", i)], "line a %d\n%s", i, logs.String())
			}
			for i := 150; i < 200; i++ {
				require.Equal(t, 1, got[line("b", i)], "line b %d", i)
			}
			require.Len(t, col.lines(), 200)
			// The copy's lines come before the new content's.
			lastA := strings.LastIndex(strings.Join(order, ""), "a")
			firstB := strings.Index(strings.Join(order, ""), "b")
			require.Less(t, lastA, firstB)
			require.Contains(t, logs.String(), "read the rest of its compressed copy")
			require.Contains(t, logs.String(), rotated+tc.kind)
			st := src.Stats()
			require.Equal(t, uint64(1), st.Truncations)
			require.Equal(t, uint64(1), st.CompressedRotations)
			require.Zero(t, st.CompressedErrors)
		})
	}
}

// After the compressed copy was read while running, a restart reads
// nothing again: neither the compressed copy (its checkpoint entry says it
// was read to its end) nor the truncated file's new content.
func TestCopyTruncate_WhileRunning_CompressedCopy_NotReadAgainAfterRestart(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, linesOf("a", 0, 100))
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	cfg := testConfig(dir, "app.log")
	st := openStore(t, cpPath)
	src, err := New(cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	col := &collector{src: src, commit: true, block: make(chan struct{}), blocked: make(chan struct{}, 1)}
	r := startWith(t, src, col)
	select {
	case <-col.blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("nothing emitted")
	}
	appendFile(t, p, linesOf("a", 100, 150))
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(p, 0))
	writeFile(t, p+".1.gz", string(compressAs(t, ".gz", data)))
	appendFile(t, p, linesOf("b", 150, 200))
	close(col.block)
	r.waitCount(t, 200)
	time.Sleep(300 * time.Millisecond) // checkpoints written (every 10ms)
	require.NoError(t, r.halt(t))
	require.NoError(t, st.Close())
	require.Equal(t, uint64(1), src.Stats().CompressedRotations)
	require.Len(t, col.lines(), 200)

	col2, logs, stats := runOnce(t, cfg, cpPath)
	require.Empty(t, col2.lines(), logs)
	require.Zero(t, stats.CompressedRotations, logs)
}
