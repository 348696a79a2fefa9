package kafka

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

// A consumer of format kpl reads a record's explicit hash key the same way
// whether its batch held one record or many: from the KPL aggregate's table
// (a Kafka record has no field beside the value for it).
func TestSend_FormatKPLKeepsTheExplicitHashKeyOfASingleRecord(t *testing.T) {
	t.Parallel()
	for _, idempotent := range []bool{true, false} { // false: Send copies the batch
		t.Run(fmt.Sprintf("idempotent=%v", idempotent), func(t *testing.T) {
			t.Parallel()
			c := startCluster(t, 3)
			o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.Format = FormatKPL; cfg.Idempotent = idempotent }))
			ehk := func(i int) string {
				if i%3 == 2 {
					return "" // none: sent as the plain record
				}
				return fmt.Sprintf("%d000000000000000000000000000000000%d", i+1, i)
			}
			var b outputs.Batch
			for i := range 6 { // one record per batch, as the KPL sends it alone
				r := aggregate.Record{Data: []byte(line(i)), PartitionKey: key(i), ExplicitHashKey: ehk(i)}
				b.Records = append(b.Records, batchtest.Build(t, 1, 0, r).Records...)
			}
			multi := batchtest.Build(t, 10, 0,
				aggregate.Record{Data: []byte(line(6)), PartitionKey: key(6), ExplicitHashKey: ehk(6)},
				aggregate.Record{Data: []byte(line(7)), PartitionKey: key(7), ExplicitHashKey: ehk(7)})
			b.Records = append(b.Records, multi.Records...)
			require.Len(t, b.Records, 7)
			for i, a := range b.Records[:6] {
				require.False(t, a.Aggregated, "record %d", i)
			}
			require.True(t, b.Records[6].Aggregated)
			deliver(t, o, b, time.Now().Add(30*time.Second))

			got := readAll(t, c.ListenAddrs(), testTopic, len(b.Records))
			require.Len(t, got, len(b.Records))
			seen := map[string]aggregate.Record{}
			for _, r := range got {
				// Only the Kafka key goes beside the value.
				recs, err := aggregate.DecodeKinesisRecord(r.Key, "", []byte(r.Value))
				require.NoError(t, err)
				for _, u := range recs {
					seen[string(u.Data)] = u
				}
			}
			require.Len(t, seen, 8)
			for i := range 8 {
				u, ok := seen[line(i)]
				require.True(t, ok, "line %d", i)
				require.Equal(t, key(i), u.PartitionKey, "line %d", i)
				require.Equal(t, ehk(i), u.ExplicitHashKey, "line %d", i)
			}
			for _, r := range got {
				if !aggregate.IsAggregated([]byte(r.Value)) {
					require.Contains(t, []string{line(2), line(5)}, r.Value, "only records without a hash key go bare")
				}
			}
		})
	}
}
