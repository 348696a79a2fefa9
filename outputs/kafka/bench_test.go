package kafka

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// benchBatches are the batches the benchmarks send: 10,000 log lines in
// aggregates of 100 (grouped by key), 20 aggregates per Send.
func benchBatches(b *testing.B) ([]outputs.Batch, int64) {
	b.Helper()
	batches := lineBatches(b, 0, 10000, 100, 20)
	var bytes int64
	for i := range 10000 {
		bytes += int64(len(line(i)))
	}
	return batches, bytes
}

// ratioHook measures what compression saved in the batches written.
type ratioHook struct{ raw, wire atomic.Int64 }

func (h *ratioHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h.raw.Add(int64(m.UncompressedBytes))
	h.wire.Add(int64(m.CompressedBytes))
}

// BenchmarkSend sends the same lines through the output and through a bare
// franz-go producer with the same settings (records prepared beforehand,
// one goroutine per batch producing its lines and waiting for their
// promises, as the sender's concurrent Sends do), against kfake accepting
// and discarding the records, so the difference is the output's own cost
// (deaggregation, copies, bookkeeping, metrics). wire/raw is the
// compression ratio of the batches written.
func BenchmarkSend(b *testing.B) {
	for _, codec := range []string{CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd} {
		b.Run("output/"+codec, func(b *testing.B) {
			c := startCluster(b, 3, kfake.BlackholeProduce())
			cfg := testConfig(c, func(cfg *Config) { cfg.Compression = codec })
			hook := &ratioHook{}
			o, err := newOutputOpts("bench", cfg, Settings{}, kgo.WithHooks(hook))
			require.NoError(b, err)
			defer o.Close(context.Background())
			batches, bytes := benchBatches(b)
			b.SetBytes(bytes)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				var wg sync.WaitGroup
				for _, bt := range batches { // as the sender: several Sends in flight
					wg.Go(func() {
						if err := o.Send(context.Background(), bt); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(hook.wire.Load())/float64(max(hook.raw.Load(), 1)), "wire/raw")
		})
		b.Run("franz-go/"+codec, func(b *testing.B) {
			c := startCluster(b, 3, kfake.BlackholeProduce())
			cfg := testConfig(c, func(cfg *Config) { cfg.Compression = codec }).withDefaults()
			opts, err := clientOpts(cfg)
			require.NoError(b, err)
			hook := &ratioHook{}
			cl, err := kgo.NewClient(append(opts, kgo.WithHooks(hook))...)
			require.NoError(b, err)
			defer cl.Close()
			batches, bytes := benchBatches(b)
			var groups [][]*kgo.Record // per batch, prepared once: the bare producer's best case
			for _, bt := range batches {
				var recs []*kgo.Record
				for i := range bt.Records {
					_ = aggregate.ForEach(&bt.Records[i], func(pk, _, data []byte) error {
						recs = append(recs, &kgo.Record{Topic: testTopic, Key: append([]byte(nil), pk...), Value: append([]byte(nil), data...)})
						return nil
					})
				}
				groups = append(groups, recs)
			}
			b.SetBytes(bytes)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				var all sync.WaitGroup
				for _, recs := range groups { // one goroutine per batch, as the sender's Sends
					all.Go(func() {
						var wg sync.WaitGroup
						wg.Add(len(recs))
						for _, r := range recs {
							*r = kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value}
							cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
								if err != nil {
									b.Error(err)
								}
								wg.Done()
							})
						}
						wg.Wait()
					})
				}
				all.Wait()
			}
			b.ReportMetric(float64(hook.wire.Load())/float64(max(hook.raw.Load(), 1)), "wire/raw")
		})
	}
}

// BenchmarkCompression measures the CPU cost of each codec on a record
// batch of log lines (what picked the default codec; see DefaultConfig).
func BenchmarkCompression(b *testing.B) {
	var src []byte
	for i := 0; len(src) < 256<<10; i++ {
		src = append(src, line(i)...)
	}
	for _, name := range []string{CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd} {
		b.Run(name, func(b *testing.B) {
			cc, err := codec(name)
			require.NoError(b, err)
			comp, err := kgo.DefaultCompressor(cc)
			require.NoError(b, err)
			var out []byte
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				var buf bytes.Buffer
				out, _ = comp.Compress(&buf, src)
			}
			b.ReportMetric(float64(len(out))/float64(len(src)), "ratio")
		})
	}
}
