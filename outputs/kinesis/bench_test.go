package kinesis

import (
	"context"
	"github.com/kplagent/agent/internal/fakeaws"
	"math/rand/v2"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkSend sends batches of 100 aggregates (about 5 MiB, 60k lines)
// to the in-process fake: the output's own cost (routing and the coverage
// check, request encoding by the SDK, signing) plus the fake's decoding.
func BenchmarkSend(b *testing.B) {
	for _, tc := range []struct {
		name   string
		shards int
		rate   RateLimit
	}{
		{"4shards", 4, RateLimitOff},
		{"4shards_reshard", 4, RateLimitOff}, // aggregates of a 2-shard map: split in Send
	} {
		b.Run(tc.name, func(b *testing.B) {
			// Counting and checking, not keeping: the benchmark sends gigabytes.
			fake := fakeaws.NewKinesis(tc.shards)
			srv := httptest.NewServer(fake)
			b.Cleanup(srv.Close)
			o := newTestOutput(b, testConfig(srv.URL, func(c *Config) { c.RateLimit = tc.rate }), nil)
			m, err := o.ShardMap(context.Background())
			require.NoError(b, err)
			if tc.name == "4shards_reshard" {
				old, err := newShardMapForTest(2)
				require.NoError(b, err)
				m = old
			}
			recs := lines(rand.New(rand.NewPCG(1, 2)), "benchmark line with some typical log content", 60_000, 1000)
			batch := build(b, m, recs)
			if len(batch.Records) > 100 {
				batch.Records = batch.Records[:100]
			}
			bytes := 0
			for i := range batch.Records {
				bytes += batch.Records[i].Size()
			}
			b.SetBytes(int64(bytes))
			b.ResetTimer()
			for b.Loop() {
				if err := o.Send(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			require.Empty(b, fake.Violations())
		})
	}
}
