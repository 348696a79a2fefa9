package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/spool"
)

type commits struct {
	mu  sync.Mutex
	got map[string]int64
}

func (c *commits) Commit(fileID string, off int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = map[string]int64{}
	}
	c.got[fileID] = off
}

func (c *commits) of(id string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.got[id]
	return v, ok
}

// openTestSpool opens a spool in dir/spool with no free-disk floor and a
// short sync interval, adjusted by tune (may be nil); closed at cleanup.
func openTestSpool(t *testing.T, dir string, tune func(*spool.Config)) *spool.Spool {
	t.Helper()
	sc := spool.DefaultConfig()
	sc.Dir = filepath.Join(dir, "spool")
	sc.MinFreeBytes = 0
	sc.SyncInterval = 10 * time.Millisecond
	if tune != nil {
		tune(&sc)
	}
	sp, err := spool.Open(sc, spool.Settings{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sp.Close() })
	return sp
}

func newTestFlow(t *testing.T, sync spool.SyncPolicy, interval time.Duration) (*flow, *spool.Spool) {
	t.Helper()
	dir := t.TempDir()
	sp := openTestSpool(t, dir, func(c *spool.Config) { c.Sync, c.SyncInterval = sync, interval })
	cfg := DefaultFlowConfig()
	cfg.Name = "f"
	cfg.Aggregation.MaxBytes = 1024
	dlq := openDeadLetter(dir)
	t.Cleanup(func() { _ = dlq.close() })
	f, err := newFlow("f", cfg, sp, dlq, newMetrics().flow("f"), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return f, sp
}

// emitLines sends n lines of 100 bytes from file "A" starting at offset 0.
func emitLines(t *testing.T, emit source.Emit, n int) int64 {
	t.Helper()
	var off int64
	for i := range n {
		data := fmt.Appendf(nil, "line %04d %090d", i, 0)
		require.NoError(t, emit(t.Context(), source.Record{Data: data, Cursor: source.Cursor{FileID: "A", Start: off, Offset: off + int64(len(data)) + 1}}))
		off += int64(len(data)) + 1
	}
	return off
}

func TestCheckpoint_NotAdvancedBeforeSpoolSync(t *testing.T) {
	f, sp := newTestFlow(t, spool.SyncInterval, time.Hour) // no background fsync within the test
	var c commits
	m := newMetrics()
	emit := f.emitFor("src", &c, m.source("src"))
	end := emitLines(t, emit, 50) // ~5 KB: several aggregates reach the spool

	require.Positive(t, sp.Stats().Appended)
	f.commit(time.Now())
	off, _ := c.of("A")
	require.LessOrEqual(t, off, int64(0), "nothing is durable yet: the checkpoint must not move")

	require.NoError(t, sp.Sync())
	f.commit(time.Now())
	off, ok := c.of("A")
	require.True(t, ok)
	require.Positive(t, off, "synced aggregates release their records")
	require.Less(t, off, end, "records still in the open aggregate hold the checkpoint back")

	require.NoError(t, f.flushAll(context.Background()))
	require.NoError(t, sp.Sync())
	f.commit(time.Now())
	off, _ = c.of("A")
	require.Equal(t, end, off, "everything durable: the checkpoint reaches the last record's end")
}

func TestCheckpoint_OversizeRecordIsDeadLetteredAndReleased(t *testing.T) {
	f, sp := newTestFlow(t, spool.SyncAlways, time.Second)
	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	big := make([]byte, 2<<20) // over the 1 MiB Kinesis record limit
	require.NoError(t, emit(t.Context(), source.Record{Data: big, Cursor: source.Cursor{FileID: "A", Start: 0, Offset: int64(len(big)) + 1}}))
	require.NoError(t, f.flushAll(context.Background()))
	f.commit(time.Now())
	off, _ := c.of("A")
	require.Equal(t, int64(len(big))+1, off)
	require.Equal(t, int64(1), f.dlq.count.Load())
	require.Zero(t, sp.Stats().Appended)
}

// Records of one file spread over several open aggregates (as with a
// multi-shard map): the checkpoint is the start of the earliest record not
// yet durable, whatever order the aggregates close in.
func TestTracker_OutOfOrderGroupsHoldTheEarliestStart(t *testing.T) {
	var c commits
	tr := newTracker()
	now := time.Now()
	tr.add("s", &c, source.Cursor{FileID: "A", Start: 0, Offset: 10}, 0, now)
	tr.add("s", &c, source.Cursor{FileID: "A", Start: 10, Offset: 20}, 1, now)
	tr.add("s", &c, source.Cursor{FileID: "A", Start: 20, Offset: 30}, 0, now)
	tr.closed(1, 1, nil, true) // group 1 (record at 10) reaches the spool first
	tr.commit(1, now, time.Hour)
	off, _ := c.of("A")
	require.Equal(t, int64(0), off, "group 0 still holds the record at 0")
	tr.closed(0, 2, nil, true)
	tr.commit(1, now, time.Hour)
	off, _ = c.of("A")
	require.Equal(t, int64(0), off, "group 0 is in the spool but not durable")
	tr.commit(2, now, time.Hour)
	off, _ = c.of("A")
	require.Equal(t, int64(30), off)
	require.False(t, tr.inFlight())
}

// A record costs no allocation on its way into an aggregate: what is
// allocated per aggregate (the spool write, a ticket) is shared by a few
// hundred records.
func TestFlow_EmitAllocatesOnlyPerAggregate(t *testing.T) {
	f, _ := newTestFlow(t, spool.SyncNever, time.Second)
	f.cfg.Aggregation.MaxBytes = 50 << 10
	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	data := make([]byte, 160)
	var off int64
	rec := source.Record{Data: data, Cursor: source.Cursor{FileID: "A"}}
	ctx := context.Background()
	perRecord := testing.AllocsPerRun(20000, func() {
		rec.Cursor.Start, rec.Cursor.Offset = off, off+161
		off += 161
		if err := emit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.4f allocations per record", perRecord)
	require.Less(t, perRecord, 0.1, "allocations per record")
}
