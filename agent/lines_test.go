package agent

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/spool"
)

// spooled reads every entry of sp (without acking) as aggregates.
func spooled(t *testing.T, sp *spool.Spool) []aggregate.Aggregate {
	t.Helper()
	require.NoError(t, sp.Sync()) // written, past the write-behind stage
	var out []aggregate.Aggregate
	for {
		_, data, ok, err := sp.TryNext(nil)
		require.NoError(t, err)
		if !ok {
			return out
		}
		a, err := aggregate.ParseEntry(data)
		require.NoError(t, err)
		out = append(out, a)
	}
}

// A flow whose outputs write records one by one builds aggregates in the
// newline framing, with one random partition key each (the record that
// opens an aggregate takes the new key), and they read back as the records.
func TestFlow_LinesFramingOneKeyPerAggregate(t *testing.T) {
	f, sp := newTestFlow(t, spool.SyncNever, time.Second)
	require.NoError(t, f.writeLines())
	var c commits
	emit := f.emitFor("src", &c, newMetrics().source("src"))
	emitLines(t, emit, 60) // 1024-byte aggregates: several
	require.NoError(t, f.flushAll(context.Background()))

	aggs := spooled(t, sp)
	require.Greater(t, len(aggs), 3)
	keys := map[string]bool{}
	i := 0
	for _, a := range aggs {
		if a.Count > 1 {
			require.Equal(t, aggregate.FramingLines, a.Framing, "one key, no line breaks: the framing stays")
		}
		require.False(t, keys[a.PartitionKey], "a new key per aggregate")
		keys[a.PartitionKey] = true
		require.NoError(t, aggregate.ForEach(&a, func(pk, _, data []byte) error {
			require.Equal(t, a.PartitionKey, string(pk))
			require.Equal(t, fmt.Sprintf("line %04d %090d", i, 0), string(data))
			i++
			return nil
		}))
	}
	require.Equal(t, 60, i)
}

// An output that is not a RecordWriter (Kinesis, raw) only ever sees KPL:
// aggregates in the newline framing, spooled under another configuration,
// are turned into the KPL record the builder would have made.
func TestSender_KPLForOutputsThatSendKPL(t *testing.T) {
	lines := aggregate.Aggregate{PartitionKey: "k", Aggregated: true, Framing: aggregate.FramingLines, Body: []byte("x\ny\n"), Count: 2}
	got := (&sender{}).forOutputs(lines)
	require.Equal(t, aggregate.FramingKPL, got.Framing)
	require.Equal(t, aggregate.AggregatedPartitionKey, got.PartitionKey)
	require.Equal(t, aggregate.PartitionKeyHash("k").String(), got.ExplicitHashKey)
	recs, err := aggregate.DecodeKinesisRecord(got.PartitionKey, got.ExplicitHashKey, got.AppendKinesisData(nil))
	require.NoError(t, err)
	require.Equal(t, []aggregate.Record{{Data: []byte("x"), PartitionKey: "k"}, {Data: []byte("y"), PartitionKey: "k"}}, recs)

	require.Equal(t, lines, (&sender{lines: true}).forOutputs(lines), "RecordWriters take it as it is")
}

// Records the processing stage made JSON objects are marked so, through the
// spool entry, for the outputs not to check them again.
func TestFlow_ProcessedObjectsAreMarked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		process bool
		want    bool
	}{{"processed into objects", true, true}, {"not processed", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sp := openTestSpool(t, dir, nil)
			cfg := DefaultFlowConfig()
			cfg.Name = "f"
			if tc.process {
				cfg.Envelope.Host = "host"
			}
			dlq := openDeadLetter(dir)
			t.Cleanup(func() { _ = dlq.close() })
			f, err := newFlow("f", cfg, sp, dlq, newMetrics().flow("f"), slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			t.Cleanup(f.close)
			require.NoError(t, f.writeLines())
			var c commits
			emit := f.emitFor("src", &c, newMetrics().source("src"))
			for i := range 3 {
				require.NoError(t, emit(t.Context(), source.Record{Data: fmt.Appendf(nil, "line %d", i), Cursor: source.Cursor{FileID: "A", Start: int64(i), Offset: int64(i + 1)}}))
			}
			require.NoError(t, f.flushAll(context.Background()))
			aggs := spooled(t, sp)
			require.Len(t, aggs, 1)
			require.Equal(t, tc.want, aggs[0].JSONObjects)
		})
	}
}

// Records after the first of a file in one aggregate are tracked in a batch
// (trackRun): the checkpoint still stops before the open aggregate, reaches
// the last record's end once it is durable, and every record is counted.
func TestFlow_TrackedInRunsCheckpointAndCounts(t *testing.T) {
	f, sp := newTestFlow(t, spool.SyncNever, time.Second)
	f.aggCfg.MaxBytes = 1 << 20 // one aggregate
	require.NoError(t, f.writeLines())
	var c commits
	m := newMetrics()
	sm := m.source("src")
	emit := f.emitFor("src", &c, sm)
	end := emitLines(t, emit, 2*maxTrackRun+10) // one open aggregate, runs cut by maxTrackRun

	require.NoError(t, sp.Sync())
	f.commit(time.Now())
	off, _ := c.of("A")
	require.LessOrEqual(t, off, int64(0), "the open aggregate holds the checkpoint at its start")

	require.NoError(t, f.flushAll(context.Background()))
	require.NoError(t, sp.Sync())
	f.commit(time.Now())
	off, _ = c.of("A")
	require.Equal(t, end, off)
	f.tmu.Lock()
	defer f.tmu.Unlock()
	require.Equal(t, uint64(2*maxTrackRun+10), sm.records)
	require.Equal(t, uint64(end)-uint64(2*maxTrackRun+10), sm.bytes, "bytes of the lines without their newlines")
}
