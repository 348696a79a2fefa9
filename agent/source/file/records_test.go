package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/internal/units"
)

// A last line without its newline is held while the file may still
// complete it, and emitted whole when the newline comes.
func TestPartial_LastLineHeldUntilNewline(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	cfg := testConfig(dir, "*.log")
	cfg.FlushPartialAfter = time.Hour
	writeFile(t, p, "one\ntw")
	r := start(t, cfg, Settings{})
	r.waitCount(t, 1)
	waitCaughtUp(t, r.src, p)
	appendFile(t, p, "o\r")
	appendFile(t, p, "\nthree\n")
	r.waitCount(t, 3)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"one", "two", "three"}, r.col.lines())
	require.Zero(t, r.src.Stats().PartialFlushes)
}

// ... and emitted on its own once the file was idle for
// flush_partial_after; what follows is the next record.
func TestPartial_FlushedAfterIdle(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	cfg := testConfig(dir, "*.log")
	cfg.FlushPartialAfter = 100 * time.Millisecond
	writeFile(t, p, "one\npart")
	r := start(t, cfg, Settings{})
	r.waitCount(t, 2)
	appendFile(t, p, "-rest\nnext\n")
	r.waitCount(t, 4)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"one", "part", "-rest", "next"}, r.col.lines())
	recs := r.col.records()
	require.Equal(t, int64(8), recs[1].cursor.Offset)
	require.Equal(t, uint64(1), r.src.Stats().PartialFlushes)
}

// A flushed last line that ends in "\r" keeps it (it may be data); the
// "\n" that comes later ends that line and makes no record of its own, in
// the same run or after a restart from the flushed line's checkpoint.
func TestPartial_NewlineAfterFlushedLineMakesNoRecord(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	cfg := testConfig(dir, "*.log")
	cfg.FlushPartialAfter = 100 * time.Millisecond
	writeFile(t, p, "one\nabc\r")
	st := openStore(t, cpPath)
	src, err := New(cfg, Settings{Name: "s", Checkpoints: st})
	require.NoError(t, err)
	r := startWith(t, src, &collector{src: src, commit: true})
	r.waitCount(t, 2)
	appendFile(t, p, "\n")
	appendFile(t, p, "two\ndef")
	r.waitCount(t, 4)
	require.NoError(t, r.halt(t))
	require.NoError(t, st.Close())
	require.Equal(t, []string{"one", "abc\r", "two", "def"}, r.col.lines())
	require.Equal(t, uint64(2), src.Stats().PartialFlushes)

	// Restarted from the checkpoint after "def": its "\r\n" comes now.
	appendFile(t, p, "\r\nthree\n")
	st2 := openStore(t, cpPath)
	src2, err := New(cfg, Settings{Name: "s", Checkpoints: st2})
	require.NoError(t, err)
	r2 := startWith(t, src2, &collector{src: src2, commit: true})
	r2.waitCount(t, 1)
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, r2.halt(t))
	require.Equal(t, []string{"three"}, r2.col.lines())
}

// A partial last line of a file rotated away is emitted when the file is
// released.
func TestPartial_FlushedWhenRotatedAway(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	cfg := testConfig(dir, "a.log")
	cfg.FlushPartialAfter = time.Hour
	cfg.RotateWait = 50 * time.Millisecond
	writeFile(t, p, "one\nunfinished")
	r := start(t, cfg, Settings{})
	r.waitCount(t, 1)
	require.NoError(t, os.Rename(p, p+".1"))
	r.waitCount(t, 2)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"one", "unfinished"}, r.col.lines())
}

// A 5 MiB line with the default 1 MiB-ish limit: truncated with the marker
// (as the Kinesis Agent does), or split into pieces that add up to the line.
func TestOversize_FiveMiBLine(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 5<<20/16)
	for _, mode := range []string{OversizeTruncate, OversizeSplit} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "a.log")
			writeFile(t, p, "before\n"+big+"\r\nafter\n")
			cfg := testConfig(dir, "*.log")
			cfg.Oversize = mode
			cfg.TruncateMarker = "…[truncated]"
			max := int(cfg.MaxRecordBytes)
			r := start(t, cfg, Settings{})
			if mode == OversizeTruncate {
				r.waitCount(t, 3)
				require.NoError(t, r.halt(t))
				recs := r.col.records()
				require.Len(t, recs, 3)
				require.Equal(t, "before", recs[0].data)
				require.Len(t, recs[1].data, max)
				require.Equal(t, big[:max-len(cfg.TruncateMarker)]+cfg.TruncateMarker, recs[1].data)
				require.Equal(t, int64(7), recs[1].cursor.Start)
				require.Equal(t, int64(7+len(big)+2), recs[1].cursor.Offset)
				require.Equal(t, "after", recs[2].data)
				require.Equal(t, uint64(1), r.src.Stats().TruncatedRecords)
				return
			}
			n := (len(big)+max-1)/max + 2
			r.waitCount(t, n)
			require.NoError(t, r.halt(t))
			recs := r.col.records()
			require.Len(t, recs, n)
			var joined strings.Builder
			for i, rc := range recs[1 : n-1] {
				require.LessOrEqual(t, len(rc.data), max)
				if i > 0 {
					require.Equal(t, recs[i].cursor.Offset, rc.cursor.Start, "pieces are contiguous")
				}
				joined.WriteString(rc.data)
			}
			require.Equal(t, big, joined.String())
			require.Equal(t, "after", recs[n-1].data)
			require.Equal(t, uint64(n-2), r.src.Stats().SplitRecords)
		})
	}
}

// The default marker is a newline: a single-line record never ends in one
// unless it was truncated.
func TestOversize_DefaultMarker(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.log"), "0123456789\nok\n")
	cfg := testConfig(dir, "*.log")
	cfg.MaxRecordBytes = 8
	r := start(t, cfg, Settings{})
	r.waitCount(t, 2)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"0123456\n", "ok"}, r.col.lines())
}

func TestMultiline_StartPattern(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "orphan\n"+
		"2024-01-01 ERROR boom\n\tat a.b(C.java:1)\n\tat d.e(F.java:2)\r\n"+
		"2024-01-01 INFO fine\n"+
		"2024-01-02 WARN last\n  continued\n")
	cfg := testConfig(dir, "*.log")
	cfg.Multiline = &MultilineConfig{Start: `^\d{4}-\d{2}-\d{2} `, Timeout: 100 * time.Millisecond}
	r := start(t, cfg, Settings{})
	r.waitCount(t, 4) // the last one after the timeout
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{
		"orphan",
		"2024-01-01 ERROR boom\n\tat a.b(C.java:1)\n\tat d.e(F.java:2)",
		"2024-01-01 INFO fine",
		"2024-01-02 WARN last\n  continued",
	}, r.col.lines())
	recs := r.col.records()
	require.Equal(t, int64(7), recs[1].cursor.Start)
	require.Equal(t, recs[2].cursor.Start, recs[1].cursor.Offset)
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, fi.Size(), recs[3].cursor.Offset)
}

func TestMultiline_ContinuePatternNegateAndLimits(t *testing.T) {
	t.Run("continue", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "a.log"), "a\n b\n c\nd\n e\n")
		cfg := testConfig(dir, "*.log")
		cfg.Multiline = &MultilineConfig{Continue: `^\s`, Timeout: 50 * time.Millisecond}
		r := start(t, cfg, Settings{})
		r.waitCount(t, 2)
		require.NoError(t, r.halt(t))
		require.Equal(t, []string{"a\n b\n c", "d\n e"}, r.col.lines())
	})
	t.Run("negated continue: lines not ending a statement continue", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "a.log"), "x = 1 +\n2;\ny;\n")
		cfg := testConfig(dir, "*.log")
		// A line that does not start with a lower-case letter continues.
		cfg.Multiline = &MultilineConfig{Continue: `^[a-z]`, Negate: true, Timeout: 50 * time.Millisecond}
		r := start(t, cfg, Settings{})
		r.waitCount(t, 2)
		require.NoError(t, r.halt(t))
		require.Equal(t, []string{"x = 1 +\n2;", "y;"}, r.col.lines())
	})
	t.Run("max lines and bytes start the next record, nothing dropped", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "a.log"), "S1\n.\n.\n.\n.\nS2\n0123456789\n0123456789\n")
		cfg := testConfig(dir, "*.log")
		cfg.Multiline = &MultilineConfig{Start: `^S`, MaxLines: 3, MaxBytes: units.ByteSize(20), Timeout: 50 * time.Millisecond}
		r := start(t, cfg, Settings{})
		r.waitCount(t, 4)
		require.NoError(t, r.halt(t))
		require.Equal(t, []string{"S1\n.\n.", ".\n.", "S2\n0123456789", "0123456789"}, r.col.lines())
	})
}

// A pending multiline record is emitted after the timeout even though no
// next record starts; lines that come later start a new record.
func TestMultiline_TimeoutFlushesPendingRecord(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "START one\n more\n")
	cfg := testConfig(dir, "*.log")
	cfg.Multiline = &MultilineConfig{Start: `^START`, Timeout: 100 * time.Millisecond}
	r := start(t, cfg, Settings{})
	r.waitCount(t, 1)
	appendFile(t, p, " late\nSTART two\n")
	r.waitCount(t, 3)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"START one\n more", " late", "START two"}, r.col.lines())
}

// A multiline record whose last line has no newline yet is completed when
// the newline comes before both timeouts.
func TestMultiline_WithPartialLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "START a\n b")
	cfg := testConfig(dir, "*.log")
	cfg.FlushPartialAfter = time.Hour
	cfg.Multiline = &MultilineConfig{Start: `^START`, Timeout: time.Hour}
	r := start(t, cfg, Settings{})
	waitCaughtUp(t, r.src, p)
	appendFile(t, p, "b\nSTART c\n")
	r.waitCount(t, 1)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"START a\n bb"}, r.col.lines())
}

// Bytes pass through as they are: invalid UTF-8 and NUL are data.
func TestRecords_BytesPassThrough(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.log"), "\xff\xfe\x00bin\xc3\n\xe2\x82\n")
	r := start(t, testConfig(dir, "*.log"), Settings{})
	r.waitCount(t, 2)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"\xff\xfe\x00bin\xc3", "\xe2\x82"}, r.col.lines())
}

// Emitting a line allocates nothing in steady state: Data points into the
// read buffer and FileID is the file's precomputed string.
func TestRecords_NoAllocationsPerLine(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			dir := t.TempDir()
			const n = 50000
			writeFile(t, filepath.Join(dir, "a.log"), numbered("x", 0, n))
			cfg := testConfig(dir, "*.log")
			src, err := New(cfg, Settings{Name: "s", Once: true})
			require.NoError(t, err)
			got, batches := 0, 0
			emit := func(_ context.Context, r source.Record) error {
				got++
				return nil
			}
			batch := func(_ context.Context, rs []source.Record) (int, error) {
				got += len(rs)
				batches++
				return len(rs), nil
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			if batched {
				require.NoError(t, src.RunBatch(t.Context(), emit, batch))
			} else {
				require.NoError(t, src.Run(t.Context(), emit))
			}
			runtime.ReadMemStats(&m1)
			require.Equal(t, n, got)
			require.Equal(t, batched, batches > 0)
			perLine := float64(m1.Mallocs-m0.Mallocs) / n
			t.Logf("%.4f allocations per line (run setup included)", perLine)
			require.Less(t, perLine, 0.05)
		})
	}
}
