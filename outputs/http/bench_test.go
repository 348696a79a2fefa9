package http

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/cputime"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

const (
	benchRecordSize = 160     // a typical log line, "\n" included
	benchBatchBytes = 1 << 20 // user bytes per Send
	benchAggBytes   = 50 << 10
)

// benchBatch is about 1 MiB of 160-byte lines in 50 KiB KPL aggregates.
func benchBatch(b *testing.B) (outputs.Batch, int) {
	line := bytes.Repeat([]byte("x"), benchRecordSize-1)
	recs := make([]aggregate.Record, benchBatchBytes/benchRecordSize)
	for i := range recs {
		recs[i] = aggregate.Record{Data: line, PartitionKey: fmt.Sprint(i % 64)}
	}
	batch := batchtest.Build(b, 0, benchAggBytes, recs...)
	return batch, len(recs) * benchRecordSize
}

// BenchmarkSend measures Send against an in-process server that discards
// the body; allocations include the server's (about 40 allocations and 10
// KiB per request).
func BenchmarkSend(b *testing.B) {
	srv := startServerFunc(b, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	})
	batch, userBytes := benchBatch(b)
	b.Logf("%d user records in %d aggregates", batch.UserRecords(), len(batch.Records))
	for _, bc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"ndjson/none/500rec", func(c *Config) { c.Compression = CompressionNone }},
		{"ndjson/none/5MiB", func(c *Config) { c.Compression, c.MaxRequestRecords = CompressionNone, 1<<20 }},
		{"ndjson/gzip/5MiB", func(c *Config) { c.MaxRequestRecords = 1 << 20 }},
		{"json/none/5MiB", func(c *Config) { c.Format, c.Compression, c.MaxRequestRecords = FormatJSON, CompressionNone, 1<<20 }},
		{"ndjson/zstd/5MiB", func(c *Config) { c.Compression, c.MaxRequestRecords = CompressionZstd, 1<<20 }},
		{"raw/none", func(c *Config) { c.Format, c.Compression = FormatRaw, CompressionNone }},
		{"raw-packed/none", func(c *Config) { c.Format, c.Compression = FormatRawPacked, CompressionNone }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := newOutput(b, config(srv.URL, bc.mod))
			require.NoError(b, o.Send(b.Context(), batch)) // warm pools and connections
			b.SetBytes(int64(userBytes))
			b.ReportAllocs()
			for b.Loop() {
				if err := o.Send(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// accessLog returns about n bytes of combined-format access log lines (as
// `make bench-e2e` writes them, without its padding to 160 bytes, which
// would flatter every codec).
func accessLog(n int) []byte {
	rng := rand.New(rand.NewPCG(42, 42))
	paths := []string{"/", "/index.html", "/api/v1/orders", "/api/v1/users/42/profile", "/static/js/app.3f9a1c.js", "/healthz", "/login", "/search?q=kinesis+agent"}
	agents := []string{"curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "kube-probe/1.30", "Go-http-client/1.1"}
	methods := []string{"GET", "GET", "POST", "PUT"}
	codes := []int{200, 200, 201, 304, 404, 500}
	out := make([]byte, 0, n+512)
	for len(out) < n {
		out = fmt.Appendf(out, "10.%d.%d.%d - - [26/Nov/2026:20:%02d:%02d +0000] \"%s %s HTTP/1.1\" %d %d \"-\" \"%s\"\n",
			rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(60), rng.IntN(60),
			methods[rng.IntN(4)], paths[rng.IntN(len(paths))], codes[rng.IntN(6)], rng.IntN(50000), agents[rng.IntN(len(agents))])
	}
	return out
}

// BenchmarkCompression compresses request bodies of access log lines with
// each codec and level the output could use (what chose the defaults; see
// BENCHMARKS.md). CPU-s/GB is the benchmark thread's CPU time per GB of
// uncompressed body (a body is compressed by the goroutine that sends it,
// so this is what a Send pays, whatever the load); ratio is
// compressed/uncompressed.
func BenchmarkCompression(b *testing.B) {
	gz := func(level int) func(dst, src []byte) []byte {
		var pool sync.Pool
		return func(dst, src []byte) []byte {
			g, ok := pool.Get().(*gzipper)
			if !ok {
				g = &gzipper{}
				g.w, _ = gzip.NewWriterLevel(g, level)
			}
			g.dst = dst
			g.w.Reset(g)
			_, _ = g.w.Write(src)
			_ = g.w.Close()
			dst, g.dst = g.dst, nil
			pool.Put(g)
			return dst
		}
	}
	zs := func(level zstd.EncoderLevel, window int) func(dst, src []byte) []byte {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithWindowSize(window), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true), zstd.WithLowerEncoderMem(true))
		require.NoError(b, err)
		return func(dst, src []byte) []byte { return enc.EncodeAll(src, dst) }
	}
	dflt, err := newZstdCompressor()
	require.NoError(b, err)
	codecs := []struct {
		name string
		fn   func(dst, src []byte) []byte
	}{
		{"gzip-1", gz(gzip.BestSpeed)},
		{"gzip-6", gz(gzip.DefaultCompression)},
		{"zstd-fastest-64KiB", zs(zstd.SpeedFastest, 64<<10)},
		{"zstd-fastest-256KiB", zs(zstd.SpeedFastest, 256<<10)},
		{"zstd-fastest-1MiB", zs(zstd.SpeedFastest, 1<<20)},
		{"zstd-fastest-4MiB", zs(zstd.SpeedFastest, 4<<20)},
		{"zstd-default-1MiB", zs(zstd.SpeedDefault, 1<<20)},
		{"zstd-better-1MiB", zs(zstd.SpeedBetterCompression, 1<<20)},
		{"zstd-best-1MiB", zs(zstd.SpeedBestCompression, 1<<20)},
		{"zstd-output-default", dflt.appendCompressed},
	}
	for _, size := range []int{1 << 20, 5 << 20} {
		src := accessLog(size)
		for _, c := range codecs {
			b.Run(fmt.Sprintf("%dMiB/%s", size>>20, c.name), func(b *testing.B) {
				dst := c.fn(nil, src)
				ratio := float64(len(dst)) / float64(len(src))
				b.SetBytes(int64(len(src)))
				b.ReportAllocs()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				start := cputime.Clock() // the thread's CPU time, wall time where it is unavailable
				for b.Loop() {
					dst = c.fn(dst[:0], src)
				}
				spent := cputime.Clock() - start
				b.ReportMetric(ratio, "ratio")
				b.ReportMetric(spent.Seconds()/(float64(b.N)*float64(len(src))/1e9), "CPU-s/GB")
			})
		}
	}
}
