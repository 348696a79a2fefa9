package http

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
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
		{"raw/none", func(c *Config) { c.Format, c.Compression = FormatRaw, CompressionNone }},
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
