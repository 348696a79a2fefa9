package agent

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/kinesalite"
)

// A stream of many shards with records on every one of them: the flow holds
// at most aggregation.max_pending_bytes in its open aggregates (one per
// shard), so it sends the oldest early rather than holding hundreds. Every
// record reaches kinesalite once, decodes (KPL deaggregation), and sits on
// the shard its hash key maps to.
func TestKinesis_ManyShardsStayWithinMaxPendingBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	const shards = 400
	srv := kinesalite.Start(t)
	start := time.Now()
	srv.CreateStream(t, "wide", shards)
	t.Logf("created a stream of %d shards in %s", shards, time.Since(start))
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}

	comps := testComponents
	comps.Sources = append(slices.Clone(comps.Sources), genType())
	const n = 8000 // a third with explicit hash keys spread evenly over every shard
	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: "off"}
sources:
  - name: gen
    type: gen
    gen: {count: %d}
outputs:
  - name: stream
    type: kinesis
    kinesis: {stream: wide, region: %s, endpoint: %q, rate_limit: "off", protocol: json}
flows:
  - name: main
    sources: [gen]
    output: stream
    partition_key: deterministic
    aggregation: {max_bytes: 4KiB, max_pending_bytes: 32KiB, max_buffered_time: 1h}
    sender: {backoff_initial: 10ms}
`, t.TempDir(), n, kinesalite.Region, srv.Endpoint)), noEnv, comps)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: comps, Once: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	start = time.Now()
	require.NoError(t, a.Run(t.Context()))
	t.Logf("shipped %d records in %s", n, time.Since(start))

	b := a.flows[0].flow.builder
	require.Equal(t, shards, b.Groups(), "one group per shard")
	require.Equal(t, 32<<10, b.Config().MaxPendingBytes)
	require.LessOrEqual(t, b.RetainedBytes(), 32<<10, "buffers kept after the flush")
	early := gatherCounter(t, a.m.reg, "agent_aggregates_closed_early_total")
	require.Positive(t, early, "aggregates closed early for memory")
	require.Equal(t, float64(b.ClosedForMemory()), early)

	start = time.Now()
	recs := srv.ReadAll(t, "wide")
	users := kinesalite.Deaggregate(t, recs)
	t.Logf("read %d Kinesis records, %d user records in %s; %v closed early for memory", len(recs), len(users), time.Since(start), early)
	require.NoError(t, kinesalite.CheckKCL(users), "every record on the shard its hash key maps to")
	seen := make(map[string]int, n)
	onShard := map[string]bool{}
	for _, u := range users {
		seen[string(u.Data)]++
		onShard[u.Shard.ID] = true
	}
	require.Len(t, users, n)
	for i := range n {
		require.Equal(t, 1, seen[fmt.Sprintf("gen %d", i)], "gen %d once", i)
	}
	require.Len(t, onShard, shards, "every shard took records")
	require.Less(t, len(recs), len(users), "records still share aggregates")
}
