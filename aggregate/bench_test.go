package aggregate

import (
	"crypto/md5"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/cputime"
)

// benchRecordSize is the user record size of the benchmarks.
const benchRecordSize = 200

// BenchmarkAggregate adds 200-byte records to a Builder making 50 KiB
// aggregates and turns each into Kinesis record data (magic, body, MD5), the
// whole cost of the format. One op is one record. It reports the throughput
// in Kinesis record bytes (MB/s) next to crypto/md5's over an aggregate of
// the same run (md5-MB/s), and their ratio (%md5; the target is 85 or more).
func BenchmarkAggregate(b *testing.B) {
	for _, bc := range []struct {
		name   string
		shards int // 0: no shard map, group by partition key
		keys   int // distinct partition keys, cycled; 0: a new key per record
	}{
		{"shards=4/keys=64", 4, 64},
		{"shards=64/keys=4096", 64, 4096},
		{"by-key/keys=4", 0, 4},
		{"shards=4/unique-keys", 4, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var m *ShardMap
			if bc.shards > 0 {
				m = evenShards(b, bc.shards)
			}
			builder, err := NewBuilder(Config{MaxBytes: DefaultMaxBytes}, m)
			if err != nil {
				b.Fatal(err)
			}
			n := bc.keys
			if n == 0 {
				n = 1 << 16 // long enough a cycle to defeat any cache
			}
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15)
			}
			data := make([]byte, benchRecordSize)
			for i := range data {
				data[i] = byte(i)
			}
			var wire []byte
			var wireBytes int64
			emit := func(_ int, a *Aggregate) error {
				wire = a.AppendKinesisData(wire[:0])
				wireBytes += int64(len(a.PartitionKey) + len(wire))
				return nil
			}
			recs := make([]Record, len(keys))
			for j := range recs {
				recs[j] = Record{PartitionKey: keys[j], Data: data}
			}
			var now time.Time
			i := 0
			add := func() {
				if _, err := builder.Add(recs[i&(len(recs)-1)], now, emit); err != nil {
					b.Fatal(err)
				}
				i++
			}
			for range 100_000 { // steady state: buffers and maps at their working size
				add()
			}
			sample := append([]byte(nil), wire...)
			// The reference: MD5 over the same number of bytes, interleaved
			// with the work measured, so that both see the same machine. The
			// ratio is of the CPU time of the benchmark's thread when the
			// system tells it (a shared machine's load does not count), of
			// wall time otherwise.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			clock := cputime.Clock
			var aggBytes, md5Bytes int64
			var aggTime, md5Time time.Duration
			wireBytes = 0
			b.ResetTimer()
			mark := clock()
			for b.Loop() {
				add()
				if i%4096 == 0 {
					aggTime += clock() - mark
					aggBytes = wireBytes
					b.StopTimer()
					start := clock()
					for md5Bytes < aggBytes {
						md5Sum = md5.Sum(sample)
						md5Bytes += int64(len(sample))
					}
					md5Time += clock() - start
					b.StartTimer()
					mark = clock()
				}
			}
			b.ReportMetric(float64(wireBytes)/b.Elapsed().Seconds()/1e6, "MB/s")
			if aggTime > 0 && md5Time > 0 {
				aggRate := float64(aggBytes) / aggTime.Seconds() / 1e6
				md5Rate := float64(md5Bytes) / md5Time.Seconds() / 1e6
				b.ReportMetric(md5Rate, "md5-MB/s")
				b.ReportMetric(100*aggRate/md5Rate, "%md5")
			}
		})
	}
}

var md5Sum [md5.Size]byte

// BenchmarkMD5 is crypto/md5 over one 50 KiB aggregate of 200-byte records,
// the reference of BenchmarkAggregate.
func BenchmarkMD5(b *testing.B) {
	a := benchAggregate(b)
	body := a.AppendKinesisData(nil)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		md5Sum = md5.Sum(body)
	}
}

// BenchmarkForEach decodes a 50 KiB aggregate without MD5 verification (the
// path from the spool to Kafka or HTTP). One op is one aggregate.
func BenchmarkForEach(b *testing.B) {
	a := benchAggregate(b)
	b.SetBytes(int64(len(a.Body)))
	n := 0
	fn := func(_, _, data []byte) error { n += len(data); return nil }
	for b.Loop() {
		if err := ForEach(&a, fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode fully decodes a 50 KiB Kinesis record: MD5 verified, one
// Record per user record.
func BenchmarkDecode(b *testing.B) {
	a := benchAggregate(b)
	data := a.AppendKinesisData(nil)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// benchAggregate returns an aggregate of 200-byte records with 64 keys,
// filled to DefaultMaxBytes.
func benchAggregate(b *testing.B) Aggregate {
	builder, err := NewBuilder(Config{}, allShards(b))
	if err != nil {
		b.Fatal(err)
	}
	var out Aggregate
	data := make([]byte, benchRecordSize)
	for i := 0; !out.Aggregated; i++ {
		_, err := builder.Add(Record{PartitionKey: fmt.Sprint("key-", i%64), Data: data}, time.Time{}, func(_ int, a *Aggregate) error {
			out = *a
			out.Body = append([]byte(nil), a.Body...)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return out
}

// BenchmarkAggregateManyShards adds 1000-byte records round-robin over the
// shards of a wide stream, into aggregates of up to 1 MiB: more than
// MaxPendingBytes (the 8 MiB default) of them. One op is one record. It
// reports the heap in use at its peak (sampled every 4096 records) and the
// user records per aggregate emitted: the bound closes aggregates early,
// and they should still hold many records.
func BenchmarkAggregateManyShards(b *testing.B) {
	for _, shards := range []int{200, 1000} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			m := evenShards(b, shards)
			keys := make([]string, shards)
			for i, left := 0, shards; left > 0; i++ {
				k := fmt.Sprintf("key-%d", i)
				if s, _ := m.Lookup(PartitionKeyHash(k)); keys[s] == "" {
					keys[s] = k
					left--
				}
			}
			builder, err := NewBuilder(Config{MaxBytes: MaxRecordSize, MaxRecords: 100000}, m)
			if err != nil {
				b.Fatal(err)
			}
			data := make([]byte, 1000)
			var aggregates, records int
			emit := func(_ int, a *Aggregate) error {
				aggregates++
				records += a.Count
				return nil
			}
			var ms runtime.MemStats
			var peak uint64
			runtime.GC()
			i := 0
			for b.Loop() {
				if _, err := builder.Add(Record{PartitionKey: keys[i%shards], Data: data}, time.Time{}, emit); err != nil {
					b.Fatal(err)
				}
				i++
				if i%4096 == 0 {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
				}
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			if aggregates > 0 {
				b.ReportMetric(float64(records)/float64(aggregates), "records/aggregate")
			}
		})
	}
}
