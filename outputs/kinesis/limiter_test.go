package kinesis

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimiter_BurstThenPacing(t *testing.T) {
	l := newLimiter(100) // 1 MiB/s and 1000 records/s per shard
	now := time.Unix(0, 0)
	// One second's worth passes at once (the burst).
	require.Zero(t, l.reserve(now, map[string]demand{"a": {bytes: 1000, records: 1000}}))
	// The next 500 records wait half a second; another shard does not.
	require.Equal(t, 500*time.Millisecond, l.reserve(now, map[string]demand{"a": {records: 500}}))
	require.Zero(t, l.reserve(now, map[string]demand{"b": {records: 500}}))
	// Bytes count too: 2 MiB on a fresh shard is one second of debt.
	require.Equal(t, time.Second, l.reserve(now, map[string]demand{"c": {bytes: 2 << 20, records: 1}}))
	// Half a second later, a has paid its debt, and the wait of a request
	// is its slowest shard's.
	require.Equal(t, 500*time.Millisecond, l.reserve(now.Add(500*time.Millisecond), map[string]demand{"a": {records: 500}, "b": {records: 1}}))
}

func TestLimiter_PercentageScalesTheRates(t *testing.T) {
	l := newLimiter(150)
	now := time.Unix(0, 0)
	require.Zero(t, l.reserve(now, map[string]demand{"a": {records: 1500}}))
	require.Equal(t, time.Second, l.reserve(now, map[string]demand{"a": {records: 1500}}))
}

func TestLimiter_ThrottlingHalvesTheRateWhichRecovers(t *testing.T) {
	l := newLimiter(100)
	now := time.Unix(0, 0)
	l.reserve(now, map[string]demand{"a": {records: 1}})
	l.throttled("a", now)
	require.Equal(t, 0.5, l.factor("a"))
	l.throttled("a", now.Add(cutInterval/2))     // the same burst: one cut
	require.InDelta(t, 0.5, l.factor("a"), 0.03) // (recovering meanwhile)
	now = now.Add(cutInterval)
	l.throttled("a", now)
	require.InDelta(t, 0.25+cutInterval.Seconds()*recoverPerSecond/2, l.factor("a"), 0.01)
	for range 20 {
		now = now.Add(cutInterval)
		l.throttled("a", now)
	}
	require.InDelta(t, minFactor, l.factor("a"), 0.05, "never below the floor")
	require.GreaterOrEqual(t, l.factor("a"), minFactor)
	// At a low factor, a second of records takes longer.
	wait := l.reserve(now, map[string]demand{"a": {records: 100}})
	require.Greater(t, wait, 100*time.Millisecond)
	// Ten quiet seconds later the shard is back to its full rate.
	now = now.Add(11 * time.Second)
	l.reserve(now, map[string]demand{"a": {records: 1}})
	require.Equal(t, 1.0, l.factor("a"))
	require.Equal(t, 1.0, l.factor("other"))
}

func TestLimiter_RetainForgetsClosedShards(t *testing.T) {
	l := newLimiter(100)
	now := time.Unix(0, 0)
	l.reserve(now, map[string]demand{"a": {records: 1}, "b": {records: 1}})
	l.throttled("a", now)
	l.retain(map[string]bool{"b": true})
	require.Equal(t, 1.0, l.factor("a"))
	require.Len(t, l.shards, 1)
}

func TestPayloadUnits(t *testing.T) {
	for size, want := range map[int]int{0: 1, 1: 1, 25 * 1024: 1, 25*1024 + 1: 2, 1 << 20: 41} {
		require.Equal(t, want, payloadUnits(size), "size %d", size)
	}
}
