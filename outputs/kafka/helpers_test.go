package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/testport"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
	"github.com/kplagent/agent/outputs/kafka/kafkatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTopic = "logs"

// startCluster starts a kfake broker over the real wire protocol with
// testTopic of partitions partitions (none when partitions is 0).
func startCluster(t testing.TB, partitions int32, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	topic := testTopic
	if partitions == 0 {
		topic = ""
	}
	return kafkatest.Start(t, topic, partitions, opts...)
}

// testConfig is a configuration for c's brokers, adjusted by fns.
func testConfig(c *kfake.Cluster, fns ...func(*Config)) Config {
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Topic = testTopic
	for _, fn := range fns {
		fn(&cfg)
	}
	return cfg
}

func newOutput(t testing.TB, cfg Config) *Output {
	t.Helper()
	o, err := New("kafka-test", cfg, Settings{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, o.Close(context.Background())) })
	return o
}

// line is the i-th test line: log-like text with a unique number.
func line(i int) string {
	return fmt.Sprintf(`{"ts":"2026-12-06T06:%02d:%02d.%06dZ","level":"info","msg":"request served","seq":%d,"path":"/api/v1/items/%d"}`,
		i/60%60, i%60, i%1000000, i, i%977)
}

// key is the partition key of line i: a few hundred distinct keys, so
// aggregates hold several.
func key(i int) string { return "host-" + strconv.Itoa(i%317) }

// lineBatches builds the batches of lines [from, to): Kinesis records of up
// to perAgg user records (grouped by key, as the flow's aggregator does
// without a shard map), perBatch Kinesis records per batch. It serves the
// 500k-line end-to-end test as well as the unit tests.
func lineBatches(t testing.TB, from, to, perAgg, perBatch int) []outputs.Batch {
	t.Helper()
	recs := make([]aggregate.Record, 0, to-from)
	for i := from; i < to; i++ {
		recs = append(recs, aggregate.Record{Data: []byte(line(i)), PartitionKey: key(i)})
	}
	all := batchtest.Build(t, perAgg, 0, recs...)
	var out []outputs.Batch
	for len(all.Records) > 0 {
		n := min(perBatch, len(all.Records))
		out = append(out, outputs.Batch{Records: all.Records[:n:n]})
		all.Records = all.Records[n:]
	}
	return out
}

// deliver sends b the way the agent's sender does: retrying only the
// failed records of a PartialError, with a short pause, until every record
// is delivered or deadline. It fails the test on a permanent error.
func deliver(t testing.TB, o *Output, b outputs.Batch, deadline time.Time) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		err := o.Send(context.Background(), b)
		if err == nil {
			return
		}
		require.False(t, outputs.IsPermanent(err), "permanent: %v", err)
		require.True(t, time.Now().Before(deadline), "not delivered by the deadline after %d attempts: %v", attempt+1, err)
		var pe *outputs.PartialError
		if errors.As(err, &pe) {
			next := outputs.Batch{Records: make([]aggregate.Aggregate, 0, len(pe.Failed))}
			for _, i := range pe.Failed {
				next.Records = append(next.Records, b.Records[i])
			}
			b = next
		}
		time.Sleep(100 * time.Millisecond) // the sender's backoff
	}
}

// consumed is one record read back.
type consumed = kafkatest.Record

// readAll reads want records of topic (then a little longer, to catch
// duplicates).
func readAll(t testing.TB, brokers []string, topic string, want int) []consumed {
	t.Helper()
	return kafkatest.ReadAll(t, brokers, topic, want, 60*time.Second)
}

// requireExactlyOnce checks that got holds lines [0, n) once each.
func requireExactlyOnce(t testing.TB, got []consumed, n int) {
	t.Helper()
	require.NoError(t, kafkatest.CheckOnce(got, n, line))
}

// freePort returns a TCP port free right now.
func freePort(t testing.TB) int {
	t.Helper()
	return testport.Port(t)
}
