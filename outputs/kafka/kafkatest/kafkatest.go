// Package kafkatest starts kfake brokers and reads topics back for the
// tests of the Kafka output and the end-to-end tests of the agent binary
// (`agent tail FILE --to kafka://…`, 500k lines and more).
package kafkatest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Start starts a one-broker kfake cluster over the real wire protocol, with
// topic of the given partitions when topic is not empty. It is closed at
// cleanup.
func Start(tb testing.TB, topic string, partitions int32, opts ...kfake.Opt) *kfake.Cluster {
	tb.Helper()
	if topic != "" {
		opts = append(opts, kfake.SeedTopics(partitions, topic))
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		tb.Fatalf("kafkatest: start kfake: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Record is a record read back.
type Record struct {
	Key, Value string
	Partition  int32
	Offset     int64
	Timestamp  time.Time // the producer's CreateTime
}

// settle is how long ReadAll keeps reading after it has want records, to
// see duplicates.
const settle = 500 * time.Millisecond

// ReadAll reads topic from the start of every partition until it has want
// records (then a little longer, to catch duplicates), failing the test if
// they do not all arrive within timeout.
func ReadAll(tb testing.TB, brokers []string, topic string, want int, timeout time.Duration) []Record {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		tb.Fatalf("kafkatest: consumer: %v", err)
	}
	defer cl.Close()
	out := make([]Record, 0, want)
	deadline := time.Now().Add(timeout)
	var extra time.Time
	for {
		if len(out) >= want && extra.IsZero() {
			extra = time.Now().Add(settle)
		}
		if !extra.IsZero() && time.Now().After(extra) {
			return out
		}
		if time.Now().After(deadline) {
			tb.Fatalf("kafkatest: read %d of %d records of %s in %s", len(out), want, topic, timeout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				tb.Logf("kafkatest: fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, Record{Key: string(r.Key), Value: string(r.Value), Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp})
		})
	}
}

// CheckOnce returns an error unless got holds the values line(0) ..
// line(n-1) exactly once each and nothing else.
func CheckOnce(got []Record, n int, line func(i int) string) error {
	seen := make(map[string]int, len(got))
	for _, r := range got {
		seen[r.Value]++
	}
	var missing, dups []int
	for i := range n {
		switch c := seen[line(i)]; {
		case c == 0:
			missing = append(missing, i)
		case c > 1:
			dups = append(dups, i)
		}
		delete(seen, line(i))
	}
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("%d lines missing (first %v)", len(missing), missing[:min(len(missing), 5)]))
	}
	if len(dups) > 0 {
		errs = append(errs, fmt.Errorf("%d lines duplicated (first %v)", len(dups), dups[:min(len(dups), 5)]))
	}
	if len(seen) > 0 {
		errs = append(errs, fmt.Errorf("%d unexpected values", len(seen)))
	}
	return errors.Join(errs...)
}

// JavaMurmur2 is Kafka's Utils.murmur2, written from the Java source's
// algorithm (seed 0x9747b28c, m 0x5bd1e995, r 24), independently of
// franz-go's.
func JavaMurmur2(data []byte) int32 {
	const (
		seed = uint32(0x9747b28c)
		m    = uint32(0x5bd1e995)
		r    = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := binary.LittleEndian.Uint32(data[i:])
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// JavaPartition is Kafka's BuiltInPartitioner.partitionForKey:
// toPositive(murmur2(key)) % numPartitions.
func JavaPartition(key string, partitions int32) int32 {
	return (JavaMurmur2([]byte(key)) & 0x7fffffff) % partitions
}
