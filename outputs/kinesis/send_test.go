package kinesis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/fakeaws"
	"github.com/kplagent/agent/outputs"
)

func TestSend_AggregatesBuiltOnTheShardMapAreDeliveredWhole(t *testing.T) {
	fake, srv := newFakeKinesis(t, 4)
	reg := prometheus.NewRegistry()
	o, err := New("k", testConfig(srv.URL), Settings{Registerer: reg})
	require.NoError(t, err)
	defer o.Close(context.Background())
	m, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	require.Equal(t, 4, m.Len())
	require.Equal(t, uint64(1), o.ShardMapVersion())

	recs := lines(rand.New(rand.NewPCG(testSeed(t), 1)), "line", 2000, 300)
	b := build(t, m, recs)
	require.GreaterOrEqual(t, len(b.Records), 4)
	require.NoError(t, o.Send(t.Context(), b))

	require.Empty(t, fake.Violations())
	require.ElementsMatch(t, dataOf(recs), userData(fake))
	require.Equal(t, 2000.0, testutil.ToFloat64(o.metrics.userRecords))
	require.Equal(t, float64(len(b.Records)), testutil.ToFloat64(o.metrics.records))
	require.GreaterOrEqual(t, testutil.ToFloat64(o.metrics.payloadUnits), float64(len(b.Records)))
	require.Equal(t, 4.0, testutil.ToFloat64(o.metrics.shards))
	n, err := testutil.GatherAndCount(reg, "agent_kinesis_user_records_put_total")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	// Only the first map fetch: nothing mismatched.
	list, _ := counts(fake)
	require.Equal(t, 1, list)
}

func TestSend_RequestsRespectRecordAndByteLimits(t *testing.T) {
	fake, srv := newFakeKinesis(t, 1)
	o := newTestOutput(t, testConfig(srv.URL, func(c *Config) {
		c.MaxRequestRecords = 7
		c.MaxRequestBytes = 1000
		c.RateLimit = RateLimitOff
	}), nil)
	data := make([]string, 50)
	for i := range data {
		data[i] = strings.Repeat("x", 90+i) // 50 records of ~100+ bytes
	}
	require.NoError(t, o.Send(t.Context(), plainBatch(data...)))
	_, puts := counts(fake)
	// By bytes: at most 1000 per request, i.e. at most 8 records of >=92
	// bytes; by count at most 7: at least ceil(50/7) = 8 requests.
	require.GreaterOrEqual(t, puts, 8)
	require.ElementsMatch(t, data, userData(fake))
}

func TestSend_OnlyFailedEntriesAreReported(t *testing.T) {
	for _, tc := range []struct {
		code     string
		throttle bool
	}{
		{"InternalFailure", false},
		{"ProvisionedThroughputExceededException", true},
		{"KMSThrottlingException", true},
	} {
		for _, proto := range []string{ProtocolCBOR, ProtocolJSON} {
			t.Run(proto+"/"+tc.code, func(t *testing.T) {
				fake, srv := newFakeKinesis(t, 2)
				fake.FailEntries(func(_ string, data []byte) string {
					if strings.HasPrefix(string(data), "fail") {
						return tc.code
					}
					return ""
				})
				o := newTestOutput(t, testConfig(srv.URL, withProtocol(proto)), newFakeClock())
				b := plainBatch("ok0", "ok1", "fail2", "ok3", "ok4", "ok5", "ok6", "fail7")
				err := o.Send(t.Context(), b)
				var pe *outputs.PartialError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, []int{2, 7}, pe.Failed)
				require.Len(t, pe.Reasons, 2)
				require.Contains(t, pe.Reasons[0], tc.code)
				require.False(t, outputs.IsPermanent(err))
				var te *outputs.ThrottleError
				require.Equal(t, tc.throttle, errors.As(err, &te))
				require.ElementsMatch(t, []string{"ok0", "ok1", "ok3", "ok4", "ok5", "ok6"}, userData(fake))
				require.Equal(t, 2.0, testutil.ToFloat64(o.metrics.failed.WithLabelValues(tc.code)))
				require.Equal(t, 6.0, testutil.ToFloat64(o.metrics.userRecords))

				// All failed: the error itself, not a partial one.
				err = o.Send(t.Context(), plainBatch("fail0", "fail1"))
				require.Error(t, err)
				require.False(t, errors.As(err, &pe))
				require.Equal(t, tc.throttle, errors.As(err, &te))
				requireProtocol(t, fake, proto)
			})
		}
	}
}

func TestSend_WholeRequestErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   string // retry, throttle, permanent
	}{
		{400, "ResourceNotFoundException", "retry"},
		{400, "ResourceInUseException", "retry"},
		{400, "AccessDeniedException", "retry"},
		{400, "KMSAccessDeniedException", "retry"},
		{500, "InternalFailure", "retry"},
		{503, "ServiceUnavailable", "retry"},
		{400, "LimitExceededException", "throttle"},
		{400, "ThrottlingException", "throttle"},
		{400, "ValidationException", "permanent"},
		{400, "InvalidArgumentException", "permanent"},
	} {
		for _, proto := range []string{ProtocolCBOR, ProtocolJSON} {
			t.Run(proto+"/"+tc.code, func(t *testing.T) {
				fake, srv := newFakeKinesis(t, 1)
				fake.FailPuts(fakeaws.APIError{Status: tc.status, Code: tc.code})
				o := newTestOutput(t, testConfig(srv.URL, withProtocol(proto)), newFakeClock())
				err := o.Send(t.Context(), plainBatch("a", "b"))
				require.ErrorContains(t, err, tc.code)
				switch tc.want {
				case "retry":
					requireRetryable(t, err)
				case "throttle":
					var te *outputs.ThrottleError
					require.ErrorAs(t, err, &te)
					require.False(t, outputs.IsPermanent(err))
				case "permanent":
					require.True(t, outputs.IsPermanent(err), "%v", err)
					require.True(t, strings.HasPrefix(err.Error(), "kinesis: PutRecords "), "the reason dead-lettered names the package once: %v", err)
				}
				require.Equal(t, 2.0, testutil.ToFloat64(o.metrics.failed.WithLabelValues(tc.code)))
				// The next attempt goes through.
				require.NoError(t, o.Send(t.Context(), plainBatch("a", "b")))
				requireProtocol(t, fake, proto)
			})
		}
	}
}

func TestSend_StreamNotFoundIsLoggedRateLimited(t *testing.T) {
	fake, srv := newFakeKinesis(t, 1)
	var logs strings.Builder
	o := newTestOutput(t, testConfig(srv.URL), newFakeClock())
	o.log = newTextLogger(&logs)
	for range 5 {
		fake.FailPuts(fakeaws.APIError{Status: 400, Code: "ResourceNotFoundException"})
		requireRetryable(t, o.Send(t.Context(), plainBatch("a")))
	}
	require.Equal(t, 1, strings.Count(logs.String(), "stream not found"), logs.String())
	require.Equal(t, 5.0, testutil.ToFloat64(o.metrics.streamMissing))
}

func TestSend_AFailedRequestFailsOnlyItsRecordsAndTheUnsent(t *testing.T) {
	fake, srv := newFakeKinesis(t, 1)
	// Request 1 passes, 2 fails with a 500 (the Send stops there), the
	// records of request 3 are not sent.
	fake.FailPuts(fakeaws.APIError{}, fakeaws.APIError{Status: 500, Code: "InternalFailure"})
	o := newTestOutput(t, testConfig(srv.URL, func(c *Config) { c.MaxRequestRecords = 3 }), newFakeClock())
	err := o.Send(t.Context(), plainBatch("0", "1", "2", "3", "4", "5", "6", "7"))
	var pe *outputs.PartialError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []int{3, 4, 5, 6, 7}, pe.Failed)
	require.False(t, outputs.IsPermanent(err))
	require.ElementsMatch(t, []string{"0", "1", "2"}, userData(fake))
	_, puts := counts(fake)
	require.Equal(t, 2, puts)

	// A permanent failure of one request fails its records for good and
	// the Send goes on with the next.
	fake.FailPuts(fakeaws.APIError{Status: 400, Code: "ValidationException"})
	err = o.Send(t.Context(), plainBatch("a", "b", "c", "d"))
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []int{0, 1, 2}, pe.Failed)
	require.True(t, outputs.IsPermanent(pe.Err))
	require.Contains(t, userData(fake), "d")
}

func TestSend_InvalidRecordsAreRejectedBeforeSending(t *testing.T) {
	fake, srv := newFakeKinesis(t, 1)
	o := newTestOutput(t, testConfig(srv.URL, func(c *Config) { c.MaxRecordSize = 100 }), newFakeClock())
	b := plainBatch("ok", strings.Repeat("x", 200), "ok2")
	b.Records = append(b.Records, aggregate.Aggregate{PartitionKey: "", Body: []byte("no key"), Count: 1},
		aggregate.Aggregate{PartitionKey: "k", ExplicitHashKey: "12x", Body: []byte("bad ehk"), Count: 1})
	err := o.Send(t.Context(), b)
	var pe *outputs.PartialError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []int{1, 3, 4}, pe.Failed)
	require.True(t, outputs.IsPermanent(pe.Err))
	require.Contains(t, pe.Reasons[0], "max_record_bytes")
	require.ElementsMatch(t, []string{"ok", "ok2"}, userData(fake))
}

func TestSend_AggregationOffSendsEachUserRecordWithItsKeys(t *testing.T) {
	fake, srv := newFakeKinesis(t, 4)
	o := newTestOutput(t, testConfig(srv.URL, func(c *Config) { c.Aggregation = false }), newFakeClock())
	m, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	recs := lines(rand.New(rand.NewPCG(testSeed(t), 2)), "u", 700, 20)
	b := build(t, m, recs)
	require.Less(t, len(b.Records), 100)
	require.NoError(t, o.Send(t.Context(), b))
	require.Empty(t, fake.Violations())
	var stored []fakeaws.Record
	for _, rs := range fake.Records() {
		stored = append(stored, rs...)
	}
	require.Len(t, stored, 700)
	want := map[string]aggregate.Record{}
	for _, r := range recs {
		want[string(r.Data)] = r
	}
	for _, s := range stored {
		require.False(t, aggregate.IsAggregated(s.Data))
		r := want[string(s.Data)]
		require.Equal(t, r.PartitionKey, s.PartitionKey)
		require.Equal(t, r.ExplicitHashKey, s.ExplicitHashKey)
	}
	require.Equal(t, 700.0, testutil.ToFloat64(o.metrics.records))
}

func TestSend_AggregatesBuiltOnAnOlderMapAreSplitForTheNewOne(t *testing.T) {
	fake, srv := newFakeKinesis(t, 2)
	o := newTestOutput(t, testConfig(srv.URL), newFakeClock())
	old, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	recs := lines(rand.New(rand.NewPCG(testSeed(t), 3)), "r", 1500, 300)
	b := build(t, old, recs) // e.g. in the spool during the reshard

	fake.Reshard(5, "shardId-child-")
	changed := o.ShardMapChanged()
	require.NoError(t, o.refresh(t.Context(), waitSpooled))
	<-changed
	require.Equal(t, uint64(2), o.ShardMapVersion())
	cur, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	require.Equal(t, 5, cur.Len())

	require.NoError(t, o.Send(t.Context(), b))
	require.Empty(t, fake.Violations(), "every sub-record must lie in the range of the shard its aggregate landed on")
	require.ElementsMatch(t, dataOf(recs), userData(fake))
	require.Positive(t, testutil.ToFloat64(o.metrics.split))
	require.Greater(t, testutil.ToFloat64(o.metrics.records), float64(len(b.Records)))
	require.Zero(t, testutil.ToFloat64(o.metrics.mismatches))
}

func TestSend_MismatchingShardTriggersARefreshWithBackoff(t *testing.T) {
	fake, srv := newFakeKinesis(t, 2)
	clock := newFakeClock()
	o := newTestOutput(t, testConfig(srv.URL), clock)
	_, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	data := make([]string, 50)
	for i := range data {
		data[i] = "plain"
	}

	// The stream was resharded behind the output's back: plain records
	// land where Kinesis routes them, and the answer names new shards.
	fake.Reshard(3, "shardId-new-")
	changed := o.ShardMapChanged()
	require.NoError(t, o.Send(t.Context(), plainBatch(data...)))
	require.Positive(t, testutil.ToFloat64(o.metrics.mismatches))
	select {
	case <-changed:
	default:
		t.Fatal("no refresh after a mismatching shard")
	}
	require.Equal(t, uint64(2), o.ShardMapVersion())
	list, _ := counts(fake)
	require.Equal(t, 2, list)

	// The shard IDs answered keep mismatching (say ListShards lags): the
	// next refreshes are spaced by the backoff, not one per Send.
	fake.AnswerShardID(func(string) string { return "shardId-elsewhere" })
	require.NoError(t, o.Send(t.Context(), plainBatch(data...))) // refreshes (the gap was reset by the change)
	list, _ = counts(fake)
	require.Equal(t, 3, list)
	for range 5 {
		require.NoError(t, o.Send(t.Context(), plainBatch(data...)))
	}
	list, _ = counts(fake)
	require.Equal(t, 3, list, "refreshes within the backoff")
	clock.Advance(maxTriggerGap)
	require.NoError(t, o.Send(t.Context(), plainBatch(data...)))
	list, _ = counts(fake)
	require.Equal(t, 4, list)
	require.Equal(t, uint64(2), o.ShardMapVersion())
}

func TestSend_AggregateLandingOnAnUnforeseenShardIsSentAgainSplit(t *testing.T) {
	fake, srv := newFakeKinesis(t, 2)
	o := newTestOutput(t, testConfig(srv.URL), newFakeClock())
	old, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	recs := lines(rand.New(rand.NewPCG(testSeed(t), 4)), "m", 2000, 400)
	b := build(t, old, recs)

	// Resharded behind the output's back: the aggregates of the old map
	// land on the new shards, some holding sub-records of neighbours.
	fake.Reshard(5, "shardId-new-")
	err = o.Send(t.Context(), b)
	require.ErrorContains(t, err, "a reshard")
	require.False(t, outputs.IsPermanent(err))
	failed := failedOf(t, err, len(b.Records))
	require.Equal(t, uint64(2), o.ShardMapVersion(), "refreshed within the Send")
	bad := len(fake.Violations())
	require.Positive(t, bad, "the fake saw aggregates straddling the new shards")

	// The sender retries the failed ones: split against the new map.
	var retry outputs.Batch
	for _, i := range failed {
		retry.Records = append(retry.Records, b.Records[i])
	}
	require.NoError(t, o.Send(t.Context(), retry))
	require.Len(t, fake.Violations(), bad, "the retry is re-aggregated")
	// Every line reached a shard in an aggregate the KCL keeps.
	kept := map[string]bool{}
	shards := fake.Shards()
	for id, rs := range fake.Records() {
		var shard aggregate.Shard
		for _, s := range shards {
			if s.ID == id {
				shard = s
			}
		}
		for _, r := range rs {
			users, err := aggregate.DecodeKinesisRecord(r.PartitionKey, r.ExplicitHashKey, r.Data)
			require.NoError(t, err)
			ok := true
			for _, u := range users {
				ok = ok && shard.Contains(hashOf(u.PartitionKey, u.ExplicitHashKey))
			}
			for _, u := range users {
				if ok {
					kept[string(u.Data)] = true
				}
			}
		}
	}
	for _, r := range recs {
		require.True(t, kept[string(r.Data)], "%s", r.Data)
	}
}

// failedOf returns the indexes a Send error reports failed: a
// PartialError's, or all n.
func failedOf(t *testing.T, err error, n int) []int {
	t.Helper()
	require.Error(t, err)
	var pe *outputs.PartialError
	if errors.As(err, &pe) {
		return pe.Failed
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	return all
}

// waitIdle waits until no background refresh runs.
func waitIdle(t *testing.T, o *Output) {
	t.Helper()
	require.Eventually(t, func() bool {
		o.maps.mu.Lock()
		defer o.maps.mu.Unlock()
		return !o.maps.refreshing
	}, 10*time.Second, time.Millisecond)
}

func TestSend_PeriodicRefresh(t *testing.T) {
	fake, srv := newFakeKinesis(t, 2)
	clock := newFakeClock()
	o := newTestOutput(t, testConfig(srv.URL, func(c *Config) { c.ShardMapRefresh = time.Minute }), clock)
	require.NoError(t, o.Send(t.Context(), plainBatch("a")))
	require.NoError(t, o.Send(t.Context(), plainBatch("b")))
	waitIdle(t, o)
	list, _ := counts(fake)
	require.Equal(t, 1, list)
	clock.Advance(time.Minute)
	require.NoError(t, o.Send(t.Context(), plainBatch("c")))
	waitIdle(t, o)
	list, _ = counts(fake)
	require.Equal(t, 2, list)
	require.Equal(t, uint64(1), o.ShardMapVersion(), "same shards: same version")
	require.Equal(t, 1.0, testutil.ToFloat64(o.metrics.refreshes.WithLabelValues("unchanged")))
}

func TestShardMap_ListShardsIsPaginatedAndKeepsOpenShardsOnly(t *testing.T) {
	fake, srv := newFakeKinesis(t, 3)
	fake.Reshard(7, "shardId-open-") // 3 closed + 7 open
	fake.SetListPageSize(2)
	o := newTestOutput(t, testConfig(srv.URL), nil)
	m, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	require.Equal(t, 7, m.Len())
	for i := range m.Len() {
		require.True(t, strings.HasPrefix(m.Shard(i).ID, "shardId-open-"))
	}
	list, _ := counts(fake)
	require.Equal(t, 5, list)
	require.Empty(t, fake.Violations())
}

func TestShardMap_IncompleteCoverageIsAnError(t *testing.T) {
	fake, srv := newFakeKinesis(t, 3)
	fake.SetShards(fake.Shards()[1:]) // a gap at the start, as mid-reshard
	o := newTestOutput(t, testConfig(srv.URL), nil)
	_, err := o.ShardMap(t.Context())
	require.ErrorContains(t, err, "do not cover")
	requireRetryable(t, o.Send(t.Context(), plainBatch("a")))
	require.Equal(t, uint64(0), o.ShardMapVersion())
}

func TestSend_LimiterBringsTheThrottleRateDown(t *testing.T) {
	// A stream whose shard takes 1000 records/s, and a sender that sends
	// as fast as it can, retrying the failed records after 100ms. Time is
	// the fake clock's: only pacing and the retry delays move it.
	run := func(rate RateLimit) (early, late int, o *Output) {
		fake, srv := newFakeKinesis(t, 1)
		clock := newFakeClock()
		fake.Throttle(clock, 1000)
		o = newTestOutput(t, testConfig(srv.URL, func(c *Config) { c.RateLimit = rate }), clock)
		data := make([]string, 250)
		for i := range data {
			data[i] = "r"
		}
		const rounds = 40
		for round := range rounds {
			b := plainBatch(data...)
			for len(b.Records) > 0 {
				err := o.Send(t.Context(), b)
				if err == nil {
					break
				}
				require.False(t, outputs.IsPermanent(err))
				var pe *outputs.PartialError
				if errors.As(err, &pe) { // else all failed
					var left outputs.Batch
					for _, i := range pe.Failed {
						left.Records = append(left.Records, b.Records[i])
					}
					b = left
				}
				clock.Advance(100 * time.Millisecond)
			}
			throttled := fake.Stats().Throttled
			if round < 8 {
				early = throttled
			}
			late = throttled - early
		}
		return early, late, o
	}
	// 400% of the shard's limit: the limiter starts too fast and must adapt.
	early, late, o := run(400)
	t.Logf("limiter at 400%%: %d throttled in the first 8 rounds, %d in the last 32", early, late)
	require.Less(t, o.limiter.factor("shardId-000000000000"), 1.0)
	offEarly, offLate, _ := run(RateLimitOff)
	t.Logf("limiter off: %d throttled in the first 8 rounds, %d in the last 32", offEarly, offLate)
	require.Less(t, late*5, offLate, "the limiter must throttle far less than no limiter")
	require.Less(t, late/5, early+1, "the throttle rate comes down once the limiter adapted")
	require.Positive(t, testutil.ToFloat64(o.metrics.limiterWait))
}

func TestSend_PacesToTheShardRate(t *testing.T) {
	fake, srv := newFakeKinesis(t, 2)
	clock := newFakeClock()
	o := newTestOutput(t, testConfig(srv.URL, func(c *Config) { c.RateLimit = 100 }), clock)
	m, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	// 5000 records on one shard at 1000/s: after the first second's burst
	// the limiter spreads them over about 4 more seconds.
	recs := make([]aggregate.Record, 5000)
	for i := range recs {
		recs[i] = aggregate.Record{Data: []byte("x"), PartitionKey: "one-key"}
	}
	b := outputs.Batch{}
	for _, r := range recs {
		b.Records = append(b.Records, aggregate.Aggregate{PartitionKey: r.PartitionKey, Body: r.Data, Count: 1})
	}
	start := clock.Now()
	require.NoError(t, o.Send(t.Context(), b))
	elapsed := clock.Now().Sub(start)
	require.InDelta(t, 4.0, elapsed.Seconds(), 0.6, "elapsed %s", elapsed)
	require.InDelta(t, elapsed.Seconds(), testutil.ToFloat64(o.metrics.limiterWait), 0.01)
	_ = m
	require.Len(t, userData(fake), 5000)
}

func TestSend_PacingHonoursContext(t *testing.T) {
	_, srv := newFakeKinesis(t, 1)
	o := newTestOutput(t, testConfig(srv.URL, func(c *Config) { c.RateLimit = 1 }), nil) // 10 records/s
	data := make([]string, 100)
	for i := range data {
		data[i] = "x"
	}
	require.NoError(t, o.Send(t.Context(), plainBatch(data[:10]...))) // the burst
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := o.Send(ctx, plainBatch(data...))
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestHealthcheck(t *testing.T) {
	_, srv := newFakeKinesis(t, 1)
	o := newTestOutput(t, testConfig(srv.URL), nil)
	require.NoError(t, o.Healthcheck(t.Context()))
	srv.Close()
	require.Error(t, o.Healthcheck(t.Context()))
}

func TestSend_NetworkErrorIsRetryable(t *testing.T) {
	_, srv := newFakeKinesis(t, 1)
	o := newTestOutput(t, testConfig(srv.URL), nil)
	_, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	srv.Close()
	requireRetryable(t, o.Send(t.Context(), plainBatch("a")))
}

func TestSend_AfterCloseFails(t *testing.T) {
	_, srv := newFakeKinesis(t, 1)
	o := newTestOutput(t, testConfig(srv.URL), nil)
	require.NoError(t, o.Close(t.Context()))
	require.ErrorIs(t, o.Send(t.Context(), plainBatch("a")), errClosed)
}

func TestSend_ListShardsErrorsAreNeverPermanent(t *testing.T) {
	fake, srv := newFakeKinesis(t, 1)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), "ListShards") {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ValidationException","message":"no"}`))
			return
		}
		fake.ServeHTTP(w, r)
	})
	o := newTestOutput(t, testConfig(srv.URL), nil)
	requireRetryable(t, o.Send(t.Context(), plainBatch("a")))
	_, puts := counts(fake)
	require.Zero(t, puts)
}

func TestSend_AggregatesOfAFlowWithoutShardMapAreSplit(t *testing.T) {
	// Today's flows aggregate against one range covering every hash key:
	// on a stream of several shards each aggregate is split in Send.
	fake, srv := newFakeKinesis(t, 4)
	o := newTestOutput(t, testConfig(srv.URL), newFakeClock())
	one, err := aggregate.NewShardMap([]aggregate.Shard{{ID: "all", End: aggregate.MaxHashKey}})
	require.NoError(t, err)
	recs := lines(rand.New(rand.NewPCG(testSeed(t), 6)), "flow", 3000, 100)
	b := build(t, one, recs)
	require.NoError(t, o.Send(t.Context(), b))
	require.Empty(t, fake.Violations())
	require.ElementsMatch(t, dataOf(recs), userData(fake))
	require.Equal(t, float64(len(b.Records)), testutil.ToFloat64(o.metrics.split))
}

func TestSend_AFastAnswerDoesNotCutTheResponse(t *testing.T) {
	// The fake answers as soon as it has the body; the SDK then closes the
	// request body while net/http may still be checking it for extra bytes.
	// That must not close the connection under the response being read
	// (it did, 1 request in 100 or so: see awsconf.hideWriterTo).
	_, srv := newFakeKinesis(t, 2)
	o := newTestOutput(t, testConfig(srv.URL, func(c *Config) { c.RateLimit = RateLimitOff }), nil)
	data := make([]string, 5000)
	for i := range data {
		data[i] = "x"
	}
	for range 40 {
		require.NoError(t, o.Send(t.Context(), plainBatch(data...)))
	}
}

func TestSend_CBORThatDoesNotDecodeFallsBackToJSON(t *testing.T) {
	// kinesalite cuts its CBOR answers at 16 KiB: the answer to 500
	// records does not decode. The request is failed (retryable), and
	// PutRecords goes on in JSON.
	fake, srv := newFakeKinesis(t, 2)
	fake.CutCBOR(16 << 10)
	var logs bytes.Buffer
	o, err := New("test", testConfig(srv.URL), Settings{Logger: newTextLogger(&logs)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, o.Close(context.Background())) })
	data := make([]string, 500)
	for i := range data {
		data[i] = fmt.Sprintf("line %d", i)
	}
	err = o.Send(t.Context(), plainBatch(data...))
	requireRetryable(t, err)
	require.ErrorContains(t, err, "CBOR")
	require.Contains(t, logs.String(), "using JSON from now on")
	require.NoError(t, o.Send(t.Context(), plainBatch(data...)))
	require.NoError(t, o.Send(t.Context(), plainBatch("after")))
	require.Equal(t, 3, fake.Stats().PutRecords)
	require.Equal(t, 1, fake.Stats().CBORRequests)
	// The first request's records were stored: they arrive twice.
	require.Len(t, userData(fake), 1001)
}

// A real endpoint that cannot read our CBOR answers SerializationException
// (or 415): that says nothing about the records, so they must not be
// dead-lettered. The request is failed retryably and PutRecords goes on in
// JSON, where the same records are delivered.
func TestSend_CBORRefusedByTheEndpointFallsBackToJSONNotDeadLetter(t *testing.T) {
	for _, e := range []fakeaws.APIError{{Status: 400, Code: "SerializationException"}, {Status: 415, Code: "UnknownError"}} {
		t.Run(e.Code, func(t *testing.T) {
			fake, srv := newFakeKinesis(t, 2)
			fake.FailPuts(e)
			var logs bytes.Buffer
			o, err := New("test", testConfig(srv.URL), Settings{Logger: newTextLogger(&logs)})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, o.Close(context.Background())) })
			err = o.Send(t.Context(), plainBatch("a", "b"))
			requireRetryable(t, err)
			require.False(t, outputs.IsPermanent(err), "refused CBOR must not dead-letter the records: %v", err)
			require.Contains(t, logs.String(), "using JSON from now on")
			require.NoError(t, o.Send(t.Context(), plainBatch("a", "b")))
			require.Equal(t, 1, fake.Stats().CBORRequests)
			require.Len(t, userData(fake), 2)
		})
	}
}

// An endpoint that is no Kinesis (another service's 404 page) fails
// ListShards and PutRecords with the status and a hint at endpoint, not
// only the SDK's "failed to decode response body"; retried as before.
func TestSend_AnEndpointThatIsNotKinesisIsNamed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	}))
	defer srv.Close()
	for _, proto := range []string{ProtocolCBOR, ProtocolJSON} {
		cfg := testConfig(srv.URL)
		cfg.Protocol = proto
		o := newTestOutput(t, cfg, newFakeClock())
		_, err := o.ShardMap(t.Context())
		require.ErrorContains(t, err, "the answer (HTTP 404) is not a Kinesis API answer: is endpoint "+srv.URL+" a Kinesis endpoint?", proto)
		err = o.Send(t.Context(), plainBatch("a"))
		requireRetryable(t, err)
		require.ErrorContains(t, err, "(HTTP 404) is not a Kinesis API answer", proto)
	}
}
