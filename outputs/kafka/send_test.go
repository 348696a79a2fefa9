package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/testport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
	"github.com/kplagent/agent/outputs/kafka/kafkatest"
)

// testLines keeps each codec's run to about a second on a loaded machine.
const testLines = 10000

func TestSend_EveryCodecDeliversEveryLineOnce(t *testing.T) {
	t.Parallel()
	for _, codec := range []string{CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd} {
		t.Run(codec, func(t *testing.T) {
			t.Parallel()
			c := startCluster(t, 3)
			o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.Compression = codec }))
			deadline := time.Now().Add(60 * time.Second)
			for _, b := range lineBatches(t, 0, testLines, 100, 50) {
				deliver(t, o, b, deadline)
			}
			got := readAll(t, c.ListenAddrs(), testTopic, testLines)
			requireExactlyOnce(t, got, testLines)
			parts := map[int32]int{}
			for _, r := range got {
				require.True(t, strings.HasPrefix(r.Key, "host-"), "key %q", r.Key)
				parts[r.Partition]++
			}
			require.Len(t, parts, 3, "records spread over the 3 partitions")
		})
	}
}

// javaMurmur2 and javaPartition are Kafka's, written independently of
// franz-go's (kafkatest, shared with the agent's end-to-end tests).
var (
	javaMurmur2   = kafkatest.JavaMurmur2
	javaPartition = kafkatest.JavaPartition
)

func TestJavaMurmur2_KafkaUtilsTestVectors(t *testing.T) {
	t.Parallel()
	// org.apache.kafka.common.utils.UtilsTest.testMurmur2
	for in, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		require.Equal(t, want, javaMurmur2([]byte(in)), in)
	}
}

func TestSend_KeyedRecordsLandWhereJavaPutsThem(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	o := newOutput(t, testConfig(c))
	const n = 3000
	deliver(t, o, lineBatches(t, 0, n, 50, 1000)[0], time.Now().Add(30*time.Second))
	got := readAll(t, c.ListenAddrs(), testTopic, n)
	requireExactlyOnce(t, got, n)
	counts := map[int32]int{}
	for _, r := range got {
		require.Equal(t, javaPartition(r.Key, 3), r.Partition, "key %q", r.Key)
		counts[r.Partition]++
	}
	require.Len(t, counts, 3)
}

func TestSend_KeyNoneIsSticky(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.Key = KeyNone }))
	const n = 2000
	for _, b := range lineBatches(t, 0, n, 100, 5) {
		deliver(t, o, b, time.Now().Add(30*time.Second))
	}
	got := readAll(t, c.ListenAddrs(), testTopic, n)
	requireExactlyOnce(t, got, n)
	for _, r := range got {
		require.Empty(t, r.Key)
	}
}

func TestSend_FormatKPLSendsEachAggregateWhole(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.Format = FormatKPL }))
	const n = 1000
	batches := lineBatches(t, 0, n, 40, 1000)
	require.Len(t, batches, 1)
	deliver(t, o, batches[0], time.Now().Add(30*time.Second))
	got := readAll(t, c.ListenAddrs(), testTopic, len(batches[0].Records))
	require.Len(t, got, len(batches[0].Records))
	var lines []consumed
	for _, r := range got {
		recs, err := aggregate.Decode([]byte(r.Value)) // verifies magic and MD5
		require.NoError(t, err)
		require.Equal(t, recs[0].PartitionKey, r.Key, "the first user record's key")
		require.Equal(t, javaPartition(r.Key, 3), r.Partition)
		for _, u := range recs {
			lines = append(lines, consumed{Key: u.PartitionKey, Value: string(u.Data)})
		}
	}
	requireExactlyOnce(t, lines, n)
}

func TestSend_TopicFieldRoutesRecords(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 0, kfake.SeedTopics(1, testTopic, "app-a", "app-b"))
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.TopicField = "topic" }))
	b := batchtest.Build(t, 10, 0, batchtest.Records(
		`{"topic":"app-a","n":1}`,
		`{"n":2,"topic":"app-b"}`,
		`{"nested":{"topic":"app-b"},"topic":"app-a","n":3}`,
		`{"topic":"bad topic!","n":4}`,
		`not json 5`,
		`{"topic":7,"n":6}`,
	)...)
	deliver(t, o, b, time.Now().Add(30*time.Second))
	vals := func(topic string, n int) []string {
		var out []string
		for _, r := range readAll(t, c.ListenAddrs(), topic, n) {
			out = append(out, r.Value)
		}
		return out
	}
	require.ElementsMatch(t, []string{`{"topic":"app-a","n":1}`, `{"nested":{"topic":"app-b"},"topic":"app-a","n":3}`}, vals("app-a", 2))
	require.ElementsMatch(t, []string{`{"n":2,"topic":"app-b"}`}, vals("app-b", 1))
	require.ElementsMatch(t, []string{`{"topic":"bad topic!","n":4}`, `not json 5`, `{"topic":7,"n":6}`}, vals(testTopic, 3))
	require.Equal(t, 1.0, testutil.ToFloat64(o.m.fallback.WithLabelValues(fallbackInvalid)))
	require.Equal(t, 2.0, testutil.ToFloat64(o.m.fallback.WithLabelValues(fallbackMissing)))
}

func TestSend_TopicFieldPathRoutesRecords(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 0, kfake.SeedTopics(1, testTopic, "app-a", "app-b"))
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.TopicField = "k8s.topic" }))
	b := batchtest.Build(t, 10, 0, batchtest.Records(
		`{"k8s":{"pod":"p","topic":"app-a"},"n":1}`,
		`{"k8s.topic":"app-b","k8s":{"topic":"app-a"},"n":2}`,
		`{"k8s":{"topic":7},"n":3}`,
		`{"topic":"app-a","n":4}`,
	)...)
	deliver(t, o, b, time.Now().Add(30*time.Second))
	vals := func(topic string, n int) []string {
		var out []string
		for _, r := range readAll(t, c.ListenAddrs(), topic, n) {
			out = append(out, r.Value)
		}
		return out
	}
	require.ElementsMatch(t, []string{`{"k8s":{"pod":"p","topic":"app-a"},"n":1}`}, vals("app-a", 1))
	require.ElementsMatch(t, []string{`{"k8s.topic":"app-b","k8s":{"topic":"app-a"},"n":2}`}, vals("app-b", 1), "a flat key equal to the path wins")
	require.ElementsMatch(t, []string{`{"k8s":{"topic":7},"n":3}`, `{"topic":"app-a","n":4}`}, vals(testTopic, 2))
	require.Equal(t, 2.0, testutil.ToFloat64(o.m.fallback.WithLabelValues(fallbackMissing)))
}

func TestSend_RequestTimedOutIsRetriedWithoutDuplicates(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	// REQUEST_TIMED_OUT on produce: kfake appends the batch and still
	// answers the error, as a broker whose replicas were slow does. The
	// producer's retries carry the same sequence numbers and are dropped.
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 4})
	o := newOutput(t, testConfig(c))
	const n = 5000
	for _, b := range lineBatches(t, 0, n, 100, 10) {
		deliver(t, o, b, time.Now().Add(60*time.Second))
	}
	require.EqualValues(t, 4, h.Hits(), "the faults were hit")
	requireExactlyOnce(t, readAll(t, c.ListenAddrs(), testTopic, n), n)
}

func TestSend_TopicCreatedLaterIsDelivered(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 0)
	o, err := newOutputOpts("k", testConfig(c), Settings{}, fastMetadata)
	require.NoError(t, err)
	defer o.Close(t.Context())
	b := lineBatches(t, 0, 500, 50, 100)[0]
	err = o.Send(t.Context(), b)
	require.Error(t, err)
	require.False(t, outputs.IsPermanent(err), "a missing topic is retried: %v", err)
	require.ErrorIs(t, err, kerr.UnknownTopicOrPartition)
	require.NoError(t, c.CreateTopic(testTopic, 3, nil))
	deliver(t, o, b, time.Now().Add(60*time.Second))
	requireExactlyOnce(t, readAll(t, c.ListenAddrs(), testTopic, 500), 500)
}

// TestSend_TopicDeletedAndRecreatedIsDeliveredAgain deletes the topic the
// output has produced to and creates it again (a new topic ID, as after
// kafka-topics --delete and --create). franz-go then fails the topic's
// records with UNKNOWN_TOPIC_ID until the topic is purged from the client;
// before the output did so, it retried them forever.
func TestSend_TopicDeletedAndRecreatedIsDeliveredAgain(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	logs := &logCapture{}
	o, err := newOutputOpts("k", testConfig(c), Settings{Logger: slog.New(logs)}, fastMetadata)
	require.NoError(t, err)
	defer o.Close(t.Context())
	bs := lineBatches(t, 0, 200, 50, 2)
	deliver(t, o, bs[0], time.Now().Add(30*time.Second))
	require.NoError(t, c.DeleteTopic(testTopic))
	require.NoError(t, c.CreateTopic(testTopic, 2, nil))
	deliver(t, o, bs[1], time.Now().Add(30*time.Second))
	got := readAll(t, c.ListenAddrs(), testTopic, 100)
	require.NoError(t, kafkatest.CheckOnce(got, 100, func(i int) string { return line(100 + i) }),
		"the second batch, once each, in the new topic")
	require.Equal(t, 1, logs.count("deleted and recreated"), "%v", logs.msgs)
}

// A user record the broker refuses alone as too large is rejected alone:
// the rest of its aggregate is delivered and counts as such.
func TestSend_RecordTooLargeIsRejectedAloneInItsAggregate(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 0)
	require.NoError(t, c.CreateTopic(testTopic, 1, map[string]string{"max.message.bytes": "2000"}))
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.Compression = CompressionNone }))
	big := strings.Repeat("x", 4000)
	recs := batchtest.Records("a1", "a2", "b1", big, "b3", "c1", "c2")
	b := batchtest.Build(t, 3, 0, recs...) // [a1 a2 b1] [big b3 c1] [c2]
	require.Len(t, b.Records, 3)
	err := o.Send(t.Context(), b)
	re := requireRejected(t, err, outputs.RejectedRecord{Record: 1, UserRecord: 0})
	require.NoError(t, re.Err, "the rest of the batch was delivered")
	require.Contains(t, re.Rejected[0].Reason, "MESSAGE_TOO_LARGE")
	require.Contains(t, re.Rejected[0].Reason, "4000 bytes")
	require.False(t, outputs.IsPermanent(err), "nothing else failed")
	got := readAll(t, c.ListenAddrs(), testTopic, 6)
	var vals []string
	for _, r := range got {
		vals = append(vals, r.Value)
	}
	// b3 and c1 shared a batch with the oversized record and were sent
	// again alone; the broker took them.
	require.ElementsMatch(t, []string{"a1", "a2", "b1", "b3", "c1", "c2"}, vals)
}

// The client's own check (a record larger than batch_max_bytes) is judged
// the same way, and a plain record (one user record) fails as its entry.
func TestSend_ClientSideTooLargeIsRejectedAlone(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.BatchMaxBytes = 1024 }))
	y := strings.Repeat("y", 2000)
	b := batchtest.Build(t, 2, 0, batchtest.Records("small", y, "z1", "z2", y)...) // [small y] [z1 z2] y
	require.Len(t, b.Records, 3)
	require.False(t, b.Records[2].Aggregated)
	err := o.Send(t.Context(), b)
	re := requireRejected(t, err, outputs.RejectedRecord{Record: 0, UserRecord: 1})
	require.Contains(t, re.Rejected[0].Reason, "2000 bytes")
	pe := requirePartial(t, err, 2)
	require.True(t, outputs.IsPermanent(pe.Err))
	require.Contains(t, pe.Reasons[0], "2000 bytes")
	requireExactlyOnceValues(t, readAll(t, c.ListenAddrs(), testTopic, 3), "small", "z1", "z2")
}

// With format kpl the aggregate is the Kafka record: it fails whole.
func TestSend_TooLargeKPLRecordFailsItsEntry(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.BatchMaxBytes = 1024; cfg.Format = FormatKPL }))
	b := batchtest.Build(t, 2, 0, batchtest.Records("small", strings.Repeat("y", 2000), "z1", "z2")...)
	err := o.Send(t.Context(), b)
	var re *outputs.RejectedRecordsError
	require.False(t, errors.As(err, &re), "%v", err)
	pe := requirePartial(t, err, 0)
	require.True(t, outputs.IsPermanent(pe.Err))
}

func requireRejected(t *testing.T, err error, want ...outputs.RejectedRecord) *outputs.RejectedRecordsError {
	t.Helper()
	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re, fmt.Sprint(err))
	require.Len(t, re.Rejected, len(want))
	for i, w := range want {
		require.Equal(t, w.Record, re.Rejected[i].Record, "rejected[%d]", i)
		require.Equal(t, w.UserRecord, re.Rejected[i].UserRecord, "rejected[%d]", i)
		require.NotEmpty(t, re.Rejected[i].Reason)
	}
	return re
}

func requireExactlyOnceValues(t *testing.T, got []consumed, want ...string) {
	t.Helper()
	var vals []string
	for _, r := range got {
		vals = append(vals, r.Value)
	}
	require.ElementsMatch(t, want, vals)
}

func TestSend_MalformedAggregateIsPermanent(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	o := newOutput(t, testConfig(c))
	b := lineBatches(t, 0, 20, 10, 10)[0]
	b.Records[0].Body = []byte{0xff, 0x01}
	err := o.Send(t.Context(), b)
	pe := requirePartial(t, err, 0)
	require.True(t, outputs.IsPermanent(pe.Err))
	require.ErrorIs(t, err, aggregate.ErrMalformed)
}

// A broker that reads a produce request and never answers: the idempotent
// producer resends the request until the broker answers, and Send waits for
// that answer past its deadline (the records alias the batch, and a record
// failed while its outcome is unknown would be written twice by the
// sender's retry). Close ends the wait: the records are failed, retryable.
func TestSend_WaitsPastItsDeadlineForARequestTheBrokerHasNotAnswered(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	var produces atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		produces.Add(1)
		return nil, nil, true // read and never answered
	})
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.SendTimeout = time.Second; cfg.ProduceTimeout = 500 * time.Millisecond }))
	errc := make(chan error, 1)
	go func() { errc <- o.Send(t.Context(), lineBatches(t, 0, 100, 10, 100)[0]) }()
	require.Eventually(t, func() bool { return produces.Load() > 0 }, 20*time.Second, 10*time.Millisecond, "the request was written")
	select {
	case err := <-errc:
		t.Fatalf("Send returned while its request was unanswered: %v", err)
	case <-time.After(3 * time.Second): // send_timeout 1s, and more
	}
	require.NoError(t, o.Close(t.Context()))
	select {
	case err := <-errc:
		require.Error(t, err)
		require.False(t, outputs.IsPermanent(err))
	case <-time.After(20 * time.Second):
		t.Fatal("Send still waits after Close")
	}
}

// The agent stopping (the sender's context ends) ends the wait at once:
// shutdown keeps its deadline. The records fail, retryable (they stay in the
// spool for the next start).
func TestSend_CallerContextEndsTheWaitForAnUnansweredRequest(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	var produces atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		produces.Add(1)
		return nil, nil, true // read and never answered
	})
	var logs lockedBuffer
	o, err := New("kafka-test", testConfig(c, func(cfg *Config) { cfg.SendTimeout = time.Second; cfg.ProduceTimeout = 500 * time.Millisecond }),
		Settings{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, o.Close(context.Background())) })
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- o.Send(ctx, lineBatches(t, 0, 100, 10, 100)[0]) }()
	require.Eventually(t, func() bool { return produces.Load() > 0 }, 20*time.Second, 10*time.Millisecond, "the request was written")
	select {
	case err := <-errc:
		t.Fatalf("Send returned while its request was unanswered: %v", err)
	case <-time.After(2 * time.Second): // past send_timeout: waiting for the outcome
	}
	stopped := time.Now()
	stop()
	select {
	case err := <-errc:
		require.Error(t, err)
		require.False(t, outputs.IsPermanent(err))
		require.Less(t, time.Since(stopped), 10*time.Second)
	case <-time.After(20 * time.Second):
		t.Fatal("Send still waits after its caller's context ended")
	}
	require.EqualValues(t, 1, o.clientResets.Load(), "the producer was replaced")
	// The log says the agent is stopping, not that the broker was silent
	// for send_timeout + outcomeWaitMax (2m30s): it waited a few seconds.
	require.Contains(t, logs.String(), "stopping with requests the broker has not answered")
	require.NotContains(t, logs.String(), "for a long time")
	require.NotContains(t, logs.String(), "waited=2m")
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The wait for an answer is bounded (outcomeWaitMax, shortened here): then
// the producer is replaced, the Send returns its records as retryable, and
// the next Send goes through the new producer.
func TestSend_ReplacesTheProducerWhenTheBrokerNeverAnswers(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	var hold atomic.Bool
	hold.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, nil, hold.Load() // held: read and never answered
	})
	o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.SendTimeout = time.Second; cfg.ProduceTimeout = 500 * time.Millisecond }))
	o.waitMax = 2 * time.Second
	first := o.client()
	start := time.Now()
	b := lineBatches(t, 0, 100, 10, 100)[0]
	err := o.Send(t.Context(), b)
	require.Error(t, err)
	require.False(t, outputs.IsPermanent(err))
	require.GreaterOrEqual(t, time.Since(start), 3*time.Second, "send_timeout, then the bounded wait")
	require.EqualValues(t, 1, o.clientResets.Load())
	require.NotSame(t, first, o.client(), "a new producer")
	hold.Store(false)
	deliver(t, o, b, time.Now().Add(30*time.Second))
	got := readAll(t, c.ListenAddrs(), testTopic, 100)
	require.Len(t, got, 100, "the held requests were never answered nor written")
}

// With idempotent: false the producer fails a request in flight at the
// deadline (the records may then be written twice), so Send returns then;
// it copied the batch, since the producer may still be writing it.
func TestSend_NotIdempotentReturnsAtItsDeadlineWhenTheBrokerNeverAnswers(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, nil, true // read and never answered
	})
	o := newOutput(t, testConfig(c, func(cfg *Config) {
		cfg.SendTimeout, cfg.ProduceTimeout, cfg.Idempotent = time.Second, 500*time.Millisecond, false
	}))
	start := time.Now()
	err := o.Send(t.Context(), lineBatches(t, 0, 100, 10, 100)[0])
	require.Error(t, err)
	require.False(t, outputs.IsPermanent(err))
	require.Less(t, time.Since(start), 20*time.Second, "Send bounds its wait")
}

func TestSend_SASL(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			c := startCluster(t, 1, kfake.EnableSASL(), kfake.Superuser(mech, "agent", "s3cret"))
			o := newOutput(t, testConfig(c, func(cfg *Config) {
				cfg.SASL = SASLConfig{Mechanism: strings.ToLower(mech), Username: "agent", Password: "s3cret"}
			}))
			deliver(t, o, lineBatches(t, 0, 50, 10, 10)[0], time.Now().Add(30*time.Second))

			bad := newOutput(t, testConfig(c, func(cfg *Config) {
				cfg.SASL = SASLConfig{Mechanism: mech, Username: "agent", Password: "wrong-password"}
				cfg.SendTimeout = time.Second
			}))
			err := bad.Send(t.Context(), lineBatches(t, 0, 5, 10, 10)[0])
			require.Error(t, err)
			require.False(t, outputs.IsPermanent(err), "authentication failures are retried: %v", err)
			require.NotContains(t, err.Error(), "wrong-password")
		})
	}
}

func TestSend_MetricsPerTopic(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	reg := prometheus.NewPedanticRegistry()
	o, err := New("k1", testConfig(c), Settings{Registerer: reg})
	require.NoError(t, err)
	defer o.Close(t.Context())
	b := lineBatches(t, 0, 100, 10, 100)[0]
	deliver(t, o, b, time.Now().Add(30*time.Second))
	require.Equal(t, 100.0, testutil.ToFloat64(o.m.records.WithLabelValues(testTopic)))
	var bytes int
	for i := range 100 {
		bytes += len(line(i)) + len(key(i))
	}
	require.Equal(t, float64(bytes), testutil.ToFloat64(o.m.bytes.WithLabelValues(testTopic)))
	n, err := testutil.GatherAndCount(reg, "agent_kafka_produce_latency_seconds")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, o.Close(t.Context()))
	// Close unregisters: an output of the same name can be built again (reload).
	o2, err := New("k1", testConfig(c), Settings{Registerer: reg})
	require.NoError(t, err)
	require.NoError(t, o2.Close(t.Context()))
}

func TestSend_AfterCloseFails(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	o := newOutput(t, testConfig(c))
	require.NoError(t, o.Close(t.Context()))
	require.ErrorIs(t, o.Send(t.Context(), lineBatches(t, 0, 1, 1, 1)[0]), errClosed)
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	o := newOutput(t, testConfig(c))
	require.NoError(t, o.Healthcheck(t.Context()))
	c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	require.Error(t, o.Healthcheck(ctx))
}

func requirePartial(t *testing.T, err error, failed ...int) *outputs.PartialError {
	t.Helper()
	var pe *outputs.PartialError
	require.ErrorAs(t, err, &pe, fmt.Sprint(err))
	require.Equal(t, failed, pe.Failed)
	require.Len(t, pe.Reasons, len(pe.Failed))
	return pe
}

// fastMetadata lets tests of missing topics reload metadata quickly (the
// default minimum age, 5s, makes each Send to a missing topic take ~12s).
var fastMetadata = kgo.MetadataMinAge(50 * time.Millisecond)

// logCapture is a slog handler that keeps the messages logged.
type logCapture struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.msgs = append(l.msgs, line)
	return nil
}
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

func (l *logCapture) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

func TestSend_UnknownTopicIsLoggedOncePerInterval(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 0)
	logs := &logCapture{}
	o, err := newOutputOpts("k", testConfig(c, func(cfg *Config) { cfg.Topic = "missing" }), Settings{Logger: slog.New(logs)}, fastMetadata)
	require.NoError(t, err)
	defer o.Close(t.Context())
	for range 3 {
		err := o.Send(t.Context(), lineBatches(t, 0, 20, 10, 10)[0])
		require.ErrorIs(t, err, kerr.UnknownTopicOrPartition)
	}
	require.Equal(t, 1, logs.count("topic does not exist"), "%v", logs.msgs)
	require.Equal(t, 60.0, testutil.ToFloat64(o.m.errors.WithLabelValues("missing", "UNKNOWN_TOPIC_OR_PARTITION")), "counted per Kafka record")
}

// TestSend_BrokerDownMidRequestWaitsForTheOutcome makes the broker stop
// answering (requests are written, answers lost) and then stop, for longer
// than send_timeout, while two workers (a sender with concurrency 2) send
// and retry their batches. The records of a request the broker may have
// written are waited for until it answers, not abandoned at the deadline:
// the sender's retry does not write them a second time (before, it did),
// and the producer holds no more than the two batches meanwhile. When the
// broker is back (same port and data) every line is there once.
func TestSend_BrokerDownMidRequestWaitsForTheOutcome(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(t.TempDir()), kfake.SeedTopics(1, testTopic)}
	var lossy lossyListener
	c, err := kfake.NewCluster(append(opts, kfake.ListenFn(lossy.listen))...)
	require.NoError(t, err)
	o, err := newOutputOpts("k", testConfig(c, func(cfg *Config) {
		cfg.SendTimeout, cfg.ProduceTimeout, cfg.BatchMaxBytes = time.Second, 500*time.Millisecond, 16<<10
	}), Settings{}, fastMetadata)
	require.NoError(t, err)
	defer o.Close(t.Context())
	const n = 4000
	// One user record per entry: an entry is never partly delivered (whose
	// retry would resend its delivered records, at-least-once per entry).
	batches := lineBatches(t, 0, n, 1, n/2)
	require.Len(t, batches, 2)
	size := int64(0)
	for _, a := range batches[0].Records {
		size += int64(len(a.Body))
	}
	lossy.drop.Store(true)
	var wg sync.WaitGroup
	for _, b := range batches {
		wg.Go(func() { deliver(t, o, b, time.Now().Add(90*time.Second)) })
	}
	require.Eventually(t, func() bool { return lossy.dropped.Load() >= 1 }, 30*time.Second, 10*time.Millisecond, "answers were lost")
	c.Close()
	var peak int64
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		peak = max(peak, o.cl.BufferedProduceBytes())
	}
	t.Logf("buffered while the broker was down: at most %d bytes (a batch: %d)", peak, size)
	require.LessOrEqual(t, peak, 3*size, "at most the two batches in flight (with their record overhead)")
	var c2 *kfake.Cluster
	require.Eventually(t, func() bool { // the port may take a moment to be free
		c2, err = kfake.NewCluster(opts...)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	t.Cleanup(c2.Close)
	wg.Wait()
	requireExactlyOnce(t, readAll(t, c2.ListenAddrs(), testTopic, n), n)
}

// The records alias the batch: once Send returned, the sender reuses its
// buffers. Overwriting each batch as soon as its Send returned must not
// change what the broker got (nor race, under -race).
func TestSend_BatchMayBeReusedOnceSendReturns(t *testing.T) {
	t.Parallel()
	for _, format := range []string{FormatRecords, FormatKPL} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			c := startCluster(t, 3)
			o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.Format = format }))
			const n = 3000
			batches := lineBatches(t, 0, n, 50, 5)
			var wg sync.WaitGroup
			for _, b := range batches {
				wg.Go(func() {
					deliver(t, o, b, time.Now().Add(60*time.Second))
					for i := range b.Records {
						clear(b.Records[i].Body) // the sender's next batch
					}
				})
			}
			wg.Wait()
			if format == FormatRecords {
				requireExactlyOnce(t, readAll(t, c.ListenAddrs(), testTopic, n), n)
				return
			}
			got := readAll(t, c.ListenAddrs(), testTopic, len(batches)*5)
			for _, r := range got {
				require.NotContains(t, r.Value, "\x00\x00\x00\x00\x00\x00\x00\x00", "an aggregate was sent after its batch was overwritten")
			}
		})
	}
}

// Client metrics (KIP-714) are pushed only with client_metrics: true.
func TestSend_ClientMetricsOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	for _, enabled := range []bool{false, true} {
		t.Run(fmt.Sprint(enabled), func(t *testing.T) {
			t.Parallel()
			c := startCluster(t, 1)
			var asked atomic.Int64
			c.ControlKey(int16(kmsg.GetTelemetrySubscriptions), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				asked.Add(1)
				return nil, nil, false // kfake answers
			})
			o := newOutput(t, testConfig(c, func(cfg *Config) { cfg.ClientMetrics = enabled }))
			deliver(t, o, lineBatches(t, 0, 100, 10, 10)[0], time.Now().Add(30*time.Second))
			if enabled {
				require.Eventually(t, func() bool { return asked.Load() > 0 }, 20*time.Second, 10*time.Millisecond, "the client asked for its telemetry subscription")
				return
			}
			time.Sleep(2 * time.Second) // the client asks within a second of its first request
			require.Zero(t, asked.Load(), "client metrics are off by default")
		})
	}
}

// The broker answers a few produce requests later than the client waits
// (produce_timeout plus franz-go's request overhead): the client gives the
// connection up with the requests' outcome unknown, although the broker
// appends them, and resends them with the same sequence numbers; the broker
// drops the copies. Every line is there once.
func TestSend_ClientSideRequestTimeoutIsRetriedWithoutDuplicates(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	var slow, resent atomic.Int64
	var mu sync.Mutex
	seen := map[string]bool{} // partition/sequence of the batches received
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			for _, pp := range tp.Partitions {
				var rb kmsg.RecordBatch
				if rb.ReadFrom(pp.Records) == nil {
					k := fmt.Sprintf("%d/%d", pp.Partition, rb.FirstSequence)
					if seen[k] {
						resent.Add(1)
					}
					seen[k] = true
				}
			}
		}
		mu.Unlock()
		if slow.Add(1) <= 3 {
			time.Sleep(1500 * time.Millisecond) // past 500ms + 300ms: the client hung up
		}
		return nil, nil, false // kfake appends and answers
	})
	o, err := newOutputOpts("k", testConfig(c, func(cfg *Config) { cfg.ProduceTimeout = 500 * time.Millisecond }), Settings{},
		kgo.RequestTimeoutOverhead(300*time.Millisecond))
	require.NoError(t, err)
	defer o.Close(t.Context())
	const n = 3000
	for _, b := range lineBatches(t, 0, n, 100, 10) {
		deliver(t, o, b, time.Now().Add(60*time.Second))
	}
	require.Positive(t, resent.Load(), "requests answered late were resent")
	requireExactlyOnce(t, readAll(t, c.ListenAddrs(), testTopic, n), n)
}

// Every record carries the time of its Send as its CreateTime (one clock
// read per Send, not per record).
func TestSend_RecordsCarryTheTimeOfTheirSend(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	o := newOutput(t, testConfig(c))
	before := time.Now().Truncate(time.Millisecond)
	deliver(t, o, lineBatches(t, 0, 500, 50, 10)[0], time.Now().Add(30*time.Second))
	after := time.Now()
	got := readAll(t, c.ListenAddrs(), testTopic, 500)
	require.Len(t, got, 500)
	for _, r := range got {
		require.False(t, r.Timestamp.Before(before) || r.Timestamp.After(after), "timestamp %s not within the Send [%s, %s]", r.Timestamp, before, after)
	}
}

// Format records takes aggregates in the newline framing (what a flow builds
// for a RecordWriter): every line arrives once, with its aggregate's key.
func TestSend_NewlineFramedAggregates(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	o := newOutput(t, testConfig(c))
	require.True(t, o.WritesRecords())
	const n = 1000
	var recs []aggregate.Record
	for i := range n {
		recs = append(recs, aggregate.Record{Data: []byte(line(i)), PartitionKey: fmt.Sprint("host-", i/100)})
	}
	b := batchtest.BuildLines(t, 100, 0, recs...)
	for _, a := range b.Records {
		require.Equal(t, aggregate.FramingLines, a.Framing)
	}
	deliver(t, o, b, time.Now().Add(60*time.Second))
	got := readAll(t, c.ListenAddrs(), testTopic, n)
	requireExactlyOnce(t, got, n)
	for _, r := range got {
		require.True(t, strings.HasPrefix(r.Key, "host-"), "key %q", r.Key)
	}
	require.False(t, newOutput(t, testConfig(c, func(cfg *Config) { cfg.Format = FormatKPL })).WritesRecords())
}

// A Send that never reached a broker says why (here: nothing listens at
// the address), not only that its records timed out: agent status shows
// the start of the error and the sender logs it. Seen with kafka://
// addresses that do not resolve or where nothing listens: "records have
// timed out before they were able to be produced", and no cause anywhere.
func TestSend_NoBrokerReachable_TheErrorSaysWhy(t *testing.T) {
	t.Parallel()
	addr := testport.Addr(t) // nothing listens there
	cfg := DefaultConfig()
	cfg.Brokers = []string{addr}
	cfg.Topic = testTopic
	cfg.SendTimeout = time.Second
	o := newOutput(t, cfg)
	err := o.Send(t.Context(), lineBatches(t, 0, 10, 10, 10)[0])
	require.Error(t, err)
	require.False(t, outputs.IsPermanent(err), "retryable: the broker may come")
	require.True(t, strings.HasPrefix(err.Error(), "kafka: broker "+addr+" unreachable: dial tcp "+addr+": connect: connection refused"), err.Error())
	require.ErrorContains(t, err, "connection refused")
	inner := errors.Unwrap(err)
	require.Error(t, inner, "the Send's own error is still wrapped")
	require.True(t, strings.HasSuffix(err.Error(), " ("+inner.Error()+")"), err.Error())
}
