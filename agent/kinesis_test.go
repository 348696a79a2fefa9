package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/internal/fakeaws"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/kinesis"
)

// genConfig is the config of genSource, a source only these tests know: it
// emits count records, every third with an explicit hash key spread over
// the whole hash key space, every third with a partition key of its own,
// the others keyless (the flow's partition_key policy).
type genConfig struct {
	Count int `yaml:"count"`
}

func (c *genConfig) Validate() error {
	if c.Count < 1 {
		return errors.New("count: at least 1")
	}
	return nil
}

type genSource struct {
	name  string
	count int
}

func (g *genSource) Name() string { return g.name }

func (g *genSource) Run(ctx context.Context, emit source.Emit) error {
	step := new(big.Int).Div(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(int64(g.count)))
	for i := range g.count {
		r := source.Record{Data: fmt.Appendf(nil, "gen %d", i)}
		switch i % 3 {
		case 0:
			r.ExplicitHashKey = new(big.Int).Mul(step, big.NewInt(int64(i))).String()
		case 1:
			r.PartitionKey = fmt.Sprintf("user-%d", i%97)
		}
		if err := emit(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func genType() source.Type {
	return source.Type{
		Name:          "gen",
		DefaultConfig: func() any { return &genConfig{} },
		New: func(cfg any, set source.Settings) (source.Source, error) {
			return &genSource{name: set.Name, count: cfg.(*genConfig).Count}, nil
		},
	}
}

// gatherCounter returns the sum of the named counter's series.
func gatherCounter(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// The flow fetches the stream's shard map before it aggregates its first
// record (retrying while ListShards fails) and builds its aggregates per
// shard: every sub-record lies in its aggregate's shard (the fake checks as
// the KCL does), and none had to be split by the output, whatever the
// records' keys (explicit hash keys, partition keys, random keys).
func TestKinesis_FlowAggregatesPerShardOfTheFirstMap(t *testing.T) {
	for _, pk := range []string{PartitionKeyRandom, PartitionKeyDeterministic} {
		t.Run(pk, func(t *testing.T) {
			fk := fakeaws.NewKinesis(4)
			fk.KeepData = true
			fk.FailListShards(2)
			srv := httptest.NewServer(fk)
			defer srv.Close()
			t.Setenv("AWS_ACCESS_KEY_ID", "fake")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
			t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
			t.Setenv("AWS_CA_BUNDLE", "")

			comps := testComponents
			comps.Sources = append(slices.Clone(comps.Sources), genType())
			const n = 6000
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
    kinesis: {stream: logs, region: us-east-1, endpoint: %q, rate_limit: "off"}
flows:
  - name: main
    sources: [gen]
    output: stream
    partition_key: %s
    sender: {backoff_initial: 10ms}
`, t.TempDir(), n, srv.URL, pk)), noEnv, comps)
			require.NoError(t, err)
			a, err := New(cfg, Settings{Components: comps, Once: true, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			require.NoError(t, a.Run(t.Context()))

			require.Empty(t, fk.Violations())
			var got []string
			for _, d := range fk.UserData() {
				got = append(got, d...)
			}
			require.Len(t, got, n)
			seen := map[string]bool{}
			for _, d := range got {
				seen[d] = true
			}
			for i := range n {
				require.True(t, seen[fmt.Sprintf("gen %d", i)], "gen %d", i)
			}
			st := fk.Stats()
			require.GreaterOrEqual(t, st.ListShards, 3, "the two failed fetches were retried")
			require.Less(t, st.Records*10, st.UserRecords, "records share aggregates")
			require.Len(t, fk.UserData(), 4, "every shard took records")
			require.Zero(t, gatherCounter(t, a.m.reg, "agent_kinesis_aggregates_split_total"), "aggregates were built per shard, none split")
			require.Equal(t, 4, a.flows[0].flow.builder.Groups())
			require.Equal(t, float64(n), gatherCounter(t, a.m.reg, "agent_kinesis_user_records_put_total"),
				"the output's metrics are served by the agent (labelled output=stream)")
		})
	}
}

// A reshard while records wait in open aggregates: the flow notices the
// new map version at its next record, flushes the aggregates built against
// the old map (the output splits those that straddle the new shards) and
// aggregates against the new map from then on. Every line arrives, every
// aggregate lies in one shard, and the file's checkpoint reaches its end
// (the tracker did not mistake old groups for new ones).
func TestKinesis_FlowRebuildsItsAggregatorWhenTheMapChanges(t *testing.T) {
	fk := fakeaws.NewKinesis(4)
	fk.KeepData = true
	srv := httptest.NewServer(fk)
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CA_BUNDLE", "")

	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	var lines []string
	write := func(from, to int) {
		f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		for i := from; i < to; i++ {
			l := fmt.Sprintf("line %d", i)
			lines = append(lines, l)
			_, err = fmt.Fprintln(f, l)
			require.NoError(t, err)
		}
		require.NoError(t, f.Close())
	}
	write(0, 400)
	yml := fmt.Sprintf(`
state_dir: %s
admin: {listen: "off"}
shutdown_timeout: 30s
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: stream
    type: kinesis
    kinesis: {stream: logs, region: us-east-1, endpoint: %q, rate_limit: "off"}
flows:
  - name: main
    sources: [app]
    output: stream
    partition_key: deterministic
    aggregation: {max_buffered_time: 1h}
`, filepath.Join(dir, "state"), log, srv.URL)
	cfg, err := ParseConfig("t.yaml", []byte(yml), noEnv, testComponents)
	require.NoError(t, err)
	ready := make(chan struct{})
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler), OnReady: func() { close(ready) }})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-ready

	// The first 400 lines wait in open aggregates, one per shard.
	fl := a.flows[0].flow
	require.Eventually(t, func() bool { return fl.pending() == 400 }, 20*time.Second, 10*time.Millisecond)
	out := a.outputs["stream"].out.(*kinesis.Output)
	require.Equal(t, uint64(1), out.ShardMapVersion())

	fk.Reshard(3, "shardId-new-")
	require.NoError(t, out.RefreshShardMap(t.Context()))
	require.Equal(t, uint64(2), out.ShardMapVersion())
	write(400, 1000)
	// The first new line rebuilt the aggregator: the 400 went out.
	require.Eventually(t, func() bool { return fk.Stats().UserRecords >= 400 }, 20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return fl.pending() == 600 }, 20*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	require.Empty(t, fk.Violations())
	byShard := fk.UserData()
	var got []string
	for id, d := range byShard {
		got = append(got, d...)
		for _, l := range d {
			var i int
			_, err := fmt.Sscanf(l, "line %d", &i)
			require.NoError(t, err)
			if i >= 400 {
				require.True(t, strings.HasPrefix(id, "shardId-new-"), "%s after the reshard on %s", l, id)
			}
		}
	}
	require.ElementsMatch(t, lines, got)
	require.Equal(t, 3, fl.builder.Groups())
	// The old aggregates of shards 1 and 2 straddle a boundary of the new
	// map and were split; the new ones, built per new shard, were not.
	require.Equal(t, 2.0, gatherCounter(t, a.m.reg, "agent_kinesis_aggregates_split_total"))

	// The checkpoint reached the end: a second run sends nothing again.
	before := fk.Stats().UserRecords
	cfg2, err := ParseConfig("t.yaml", []byte(yml), noEnv, testComponents)
	require.NoError(t, err)
	a2, err := New(cfg2, Settings{Components: testComponents, Once: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, a2.Run(t.Context()))
	require.Equal(t, before, fk.Stats().UserRecords)
}

// The tracker refuses a new set of groups while records are open in the
// old ones: their indexes would name other aggregates.
func TestTracker_RegroupRefusesOpenGroups(t *testing.T) {
	tr := newTracker()
	c := &nopCommitter{}
	now := time.Now()
	tr.add("s", c, source.Cursor{FileID: "f", Start: 0, Offset: 10}, 3, now)
	require.ErrorContains(t, tr.regroup(2), "group 3 of the old aggregator still has open records")
	tr.closed(3, 1, nil, true)
	require.NoError(t, tr.regroup(2))
	require.Len(t, tr.groups, 2)
	tr.add("s", c, source.Cursor{FileID: "f", Start: 10, Offset: 20}, 1, now)
	tr.closed(1, 2, nil, true)
	tr.commit(2, now, time.Hour)
	require.Equal(t, int64(20), c.last)
}

type nopCommitter struct{ last int64 }

func (c *nopCommitter) Commit(_ string, off int64) { c.last = off }

var (
	_ outputs.ShardMapper     = (*kinesis.Output)(nil)
	_ outputs.ShardMapWatcher = (*kinesis.Output)(nil)
)

// While ListShards keeps failing, records wait unread (nothing is
// aggregated against a map that may be wrong), a shutdown is not held up,
// and the next run, with the stream reachable, delivers every line.
func TestKinesis_NoShardMapHoldsRecordsUntilShutdown(t *testing.T) {
	fk := fakeaws.NewKinesis(2)
	fk.KeepData = true
	fk.FailListShards(1 << 30)
	srv := httptest.NewServer(fk)
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CA_BUNDLE", "")
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	var lines []string
	for i := range 300 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	require.NoError(t, os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	yml := fmt.Sprintf(`
state_dir: %s
admin: {listen: "off"}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: stream
    type: kinesis
    kinesis: {stream: logs, region: us-east-1, endpoint: %q, rate_limit: "off"}
flows:
  - name: main
    sources: [app]
    output: stream
    sender: {backoff_initial: 10ms, backoff_max: 50ms}
`, filepath.Join(dir, "state"), log, srv.URL)
	cfg, err := ParseConfig("t.yaml", []byte(yml), noEnv, testComponents)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool { return fk.Stats().ListShards >= 5 }, 20*time.Second, 10*time.Millisecond, "the fetch is retried")
	require.Zero(t, fk.Stats().PutRecords)
	start := time.Now()
	cancel()
	require.NoError(t, <-done)
	require.Less(t, time.Since(start), 10*time.Second, "the retry loop ends with the shutdown")

	fk.FailListShards(0)
	cfg, err = ParseConfig("t.yaml", []byte(yml), noEnv, testComponents)
	require.NoError(t, err)
	a, err = New(cfg, Settings{Components: testComponents, Once: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, a.Run(t.Context()))
	require.Empty(t, fk.Violations())
	var got []string
	for _, d := range fk.UserData() {
		got = append(got, d...)
	}
	require.ElementsMatch(t, lines, got)
}

// With sender.max_retry_duration set, the wait for the first shard map is
// bounded by it too: past it the flow aggregates without a map, the sends
// fail (no map, nothing is sent) and the sender dead-letters the records
// after max_retry_duration, so a run with Once ends. Before, the records
// waited unread forever and agent tail --once --max-retry-duration never
// returned for a stream that does not exist.
func TestKinesis_NoShardMapPastMaxRetryDurationDeadLetters(t *testing.T) {
	fk := fakeaws.NewKinesis(2)
	fk.FailListShards(1 << 30)
	srv := httptest.NewServer(fk)
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CA_BUNDLE", "")
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	var lines []string
	for i := range 50 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	require.NoError(t, os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	yml := fmt.Sprintf(`
state_dir: %s
admin: {listen: "off"}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: stream
    type: kinesis
    kinesis: {stream: logs, region: us-east-1, endpoint: %q, rate_limit: "off"}
flows:
  - name: main
    sources: [app]
    output: stream
    sender: {backoff_initial: 10ms, backoff_max: 50ms, max_retry_duration: 500ms}
`, filepath.Join(dir, "state"), log, srv.URL)
	cfg, err := ParseConfig("t.yaml", []byte(yml), noEnv, testComponents)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: testComponents, Once: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.ErrorIs(t, a.Run(ctx), ErrDeadLettered)
	require.NoError(t, ctx.Err(), "the run ended by itself")
	data, err := os.ReadFile(filepath.Join(dir, "state", DeadLetterFile))
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSpace(string(data)), "\n"), len(lines), "every line dead-lettered once")
	require.Zero(t, fk.Stats().PutRecords, "nothing was sent without a map")
}

// A reload that points a Kinesis flow at another stream (another endpoint,
// another shard map) rebuilds the flow: its aggregates are built per shard
// of the new stream's map. Every line arrives at one stream or the other,
// every aggregate within one shard of the stream it went to.
func TestKinesis_ReloadToAnotherStreamRebuildsTheFlowAgainstItsMap(t *testing.T) {
	fk1, fk2 := fakeaws.NewKinesis(4), fakeaws.NewKinesis(2)
	fk1.KeepData, fk2.KeepData = true, true
	srv1, srv2 := httptest.NewServer(fk1), httptest.NewServer(fk2)
	defer srv1.Close()
	defer srv2.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CA_BUNDLE", "")
	log := filepath.Join(t.TempDir(), "app.log")
	config := func(url string) string {
		return fmt.Sprintf(`
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: stream
    type: kinesis
    kinesis: {stream: logs, region: us-east-1, endpoint: %q, rate_limit: "off"}
flows:
  - name: main
    sources: [app]
    output: stream
    partition_key: deterministic
    aggregation: {max_buffered_time: 10ms}
    sender: {backoff_initial: 10ms}
`, log, url)
	}
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	appendFile(t, log, b.String())
	h := startReloadHarness(t, config(srv1.URL), nil)
	got := func() map[string]bool {
		seen := map[string]bool{}
		for _, fk := range []*fakeaws.Kinesis{fk1, fk2} {
			for _, d := range fk.UserData() {
				for _, l := range d {
					seen[l] = true
				}
			}
		}
		return seen
	}
	require.Eventually(t, func() bool { return len(got()) >= 1000 }, 20*time.Second, 10*time.Millisecond)
	rep, err := h.reload(config(srv2.URL))
	require.NoError(t, err)
	require.Equal(t, []string{"main"}, rep.Rebuilt, "the shard map shapes the aggregates: the flow is rebuilt")
	b.Reset()
	for i := 2000; i < 4000; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	appendFile(t, log, b.String())
	require.Eventually(t, func() bool { return len(got()) == 4000 }, 20*time.Second, 10*time.Millisecond)
	require.Empty(t, fk1.Violations())
	require.Empty(t, fk2.Violations())
	require.NotEmpty(t, fk2.UserData(), "the new stream took the lines read after the reload")
	require.Equal(t, 2, h.flow("main").flow.builder.Groups(), "aggregated per shard of the new stream")
	require.Equal(t, 4000, len(got()))
}

// While a flow waits for its first shard map (a stream not found), nothing
// is sent and no send fails: the status says the flow waits and why (it
// read as an idle, healthy output with an empty backlog), and the pipeline
// turns not ready after admin.not_ready_after. Once the map comes the wait
// is over.
func TestKinesis_StatusShowsTheWaitForTheShardMap(t *testing.T) {
	fk := fakeaws.NewKinesis(2)
	fk.FailListShards(1 << 30)
	srv := httptest.NewServer(fk)
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CA_BUNDLE", "")
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(log, []byte("one\ntwo\n"), 0o600))
	yml := fmt.Sprintf(`
state_dir: %s
admin: {listen: "off", not_ready_after: 1s}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: stream
    type: kinesis
    kinesis: {stream: logs, region: us-east-1, endpoint: %q, rate_limit: "off"}
flows:
  - name: main
    sources: [app]
    output: stream
    sender: {backoff_initial: 10ms, backoff_max: 50ms}
`, filepath.Join(dir, "state"), log, srv.URL)
	cfg, err := ParseConfig("t.yaml", []byte(yml), noEnv, testComponents)
	require.NoError(t, err)
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	var st Status
	require.Eventually(t, func() bool {
		st = a.Status()
		return len(st.Flows) == 1 && st.Flows[0].ShardMapWait != nil && !st.Ready
	}, 20*time.Second, 10*time.Millisecond, "the wait is shown and the pipeline turns not ready: %+v", st)
	require.Contains(t, st.Flows[0].ShardMapWait.LastError, "ListShards")
	require.Contains(t, st.NotReady, "no shard map")

	fk.FailListShards(0)
	require.Eventually(t, func() bool {
		st = a.Status()
		return st.Flows[0].ShardMapWait == nil && st.Ready && fk.Stats().UserRecords == 2
	}, 20*time.Second, 10*time.Millisecond, "the wait ends with the map: %+v", st)
}

// A Kinesis stream not found while the flow waits for its first shard map:
// the output's warning said the records wait in the spool, while they wait
// unread in their file (the spool holds none). It says so now, once for the
// whole wait, and the records are delivered once the stream exists.
func TestKinesis_StreamNotFoundBeforeTheShardMapSaysTheRecordsWaitUnread(t *testing.T) {
	fk := fakeaws.NewKinesis(2)
	fk.SetStreamMissing(true)
	srv := httptest.NewServer(fk)
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CA_BUNDLE", "")
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(log, []byte("one\ntwo\n"), 0o600))
	yml := fmt.Sprintf(`
state_dir: %s
admin: {listen: "off"}
sources:
  - name: app
    type: file
    file: {include: [%q], start_at: beginning}
outputs:
  - name: stream
    type: kinesis
    kinesis: {stream: logs, region: us-east-1, endpoint: %q, rate_limit: "off"}
flows:
  - name: main
    sources: [app]
    output: stream
    sender: {backoff_initial: 10ms, backoff_max: 50ms}
`, filepath.Join(dir, "state"), log, srv.URL)
	cfg, err := ParseConfig("t.yaml", []byte(yml), noEnv, testComponents)
	require.NoError(t, err)
	var logs syncBuffer
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	require.Eventually(t, func() bool { return fk.Stats().ListShards >= 5 }, 20*time.Second, 10*time.Millisecond,
		"the flow retries the first shard map")
	out := logs.String()
	require.Equal(t, 1, strings.Count(out, `msg="stream not found`), "one warning for the episode: %s", out)
	require.Contains(t, out, "records wait unread in their sources", out)
	require.NotContains(t, out, "records wait in the spool", out)
	require.Zero(t, fk.Stats().PutRecords, "nothing was aggregated, nothing sent")

	fk.SetStreamMissing(false)
	require.Eventually(t, func() bool { return fk.Stats().UserRecords == 2 }, 20*time.Second, 10*time.Millisecond)
}
