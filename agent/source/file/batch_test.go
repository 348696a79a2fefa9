package file

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
)

// batchCollector takes a RunBatch's records: copies of each batch's
// records, the batch sizes, and the records that came one by one.
type batchCollector struct {
	mu      sync.Mutex
	recs    []rec
	sizes   []int
	singles int
}

func (c *batchCollector) emit(_ context.Context, r source.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.singles++
	c.recs = append(c.recs, rec{data: string(r.Data), cursor: r.Cursor})
	return nil
}

func (c *batchCollector) batch(_ context.Context, rs []source.Record) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sizes = append(c.sizes, len(rs))
	for _, r := range rs {
		c.recs = append(c.recs, rec{data: string(r.Data), cursor: r.Cursor})
	}
	return len(rs), nil
}

func (c *batchCollector) snapshot() ([]rec, []int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rec(nil), c.recs...), append([]int(nil), c.sizes...), c.singles
}

// RunBatch hands a read's lines over in batches of at most maxBatch, in
// order, with their cursors; a line truncated across reads (its kept
// prefix held by the splitter, which the same read reuses for the next
// one) comes out intact between them.
func TestRunBatch_LinesAndHeldTruncations(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	// Lines longer than the limit (mostly): nearly every read ends
	// inside one, whose prefix the splitter holds until the next read.
	const n = 40000
	var b strings.Builder
	var want []string
	truncated := 0
	for i := range n {
		l := fmt.Sprintf("%07d-%s", i, strings.Repeat("x", i%30))
		b.WriteString(l + "\n")
		if len(l) > 12 {
			l = l[:11] + "~"
			truncated++
		}
		want = append(want, l)
	}
	writeFile(t, p, b.String())
	cfg := testConfig(dir, "*.log")
	cfg.MaxRecordBytes = 12
	cfg.TruncateMarker = "~"
	src, err := New(cfg, Settings{Name: "test"})
	require.NoError(t, err)
	col := &batchCollector{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.RunBatch(ctx, col.emit, col.batch) }()
	require.Eventually(t, func() bool { recs, _, _ := col.snapshot(); return len(recs) >= n }, 20*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	recs, sizes, singles := col.snapshot()
	require.Len(t, recs, n)
	var off int64
	for i, r := range recs {
		require.Equal(t, want[i], r.data, "record %d", i)
		require.Equal(t, off, r.cursor.Start, "record %d", i)
		off += int64(len(fmt.Sprintf("%07d-", i))) + int64(i%30) + 1
		require.Equal(t, off, r.cursor.Offset, "record %d", i)
	}
	require.NotEmpty(t, sizes)
	for _, s := range sizes {
		require.LessOrEqual(t, s, maxBatch)
	}
	require.Positive(t, singles, "the held truncations go one by one")
	require.Equal(t, truncated, singles, "truncations go one by one, the rest in batches")
	require.Equal(t, uint64(truncated), src.Stats().TruncatedRecords)
}

// A read that emits a held truncated line and then holds the next one:
// the first must not come out with the second's bytes (the splitter reuses
// its held buffer within the read).
func TestRunBatch_HeldReusedInOneRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	long := func(i int) string { return fmt.Sprintf("L%03d-%s", i, strings.Repeat("y", 30)) }
	writeFile(t, p, long(0)) // incomplete: held until its newline comes
	cfg := testConfig(dir, "*.log")
	cfg.MaxRecordBytes = 12
	cfg.TruncateMarker = "~"
	cfg.FlushPartialAfter = time.Hour
	src, err := New(cfg, Settings{Name: "test"})
	require.NoError(t, err)
	col := &batchCollector{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.RunBatch(ctx, col.emit, col.batch) }()
	waitCaughtUp(t, src, p)
	var want []string
	for i := range 5 {
		// The rest of long(i), a short line, and long(i+1) unfinished.
		appendFile(t, p, fmt.Sprintf("zz\nS%03d\n%s", i, long(i+1)))
		want = append(want, long(i)[:11]+"~", fmt.Sprintf("S%03d", i))
		require.Eventually(t, func() bool { recs, _, _ := col.snapshot(); return len(recs) >= len(want) }, 20*time.Second, 5*time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done)
	recs, _, _ := col.snapshot()
	var got []string
	for _, r := range recs {
		got = append(got, r.data)
	}
	require.Equal(t, want, got)
}
