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
)

const (
	benchRecordSize = 160     // a typical log line
	benchBatchBytes = 1 << 20 // user bytes per Send
)

// benchPlainBatch is a batch of plain 160-byte records (until aggregate
// bodies can be built here, see benchAggregateBatch).
func benchPlainBatch() outputs.Batch {
	line := bytes.Repeat([]byte("x"), benchRecordSize-1)
	n := benchBatchBytes / benchRecordSize
	b := outputs.Batch{Records: make([]aggregate.Aggregate, n)}
	for i := range b.Records {
		b.Records[i] = aggregate.Aggregate{PartitionKey: fmt.Sprint(i % 64), Body: line, Count: 1}
	}
	return b
}

func BenchmarkSend(b *testing.B) {
	srv := startServerFunc(b, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	})
	batch := benchPlainBatch()
	for _, bc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"ndjson/none/500rec", func(c *Config) { c.Compression = CompressionNone }},
		{"ndjson/none/5MiB", func(c *Config) { c.Compression, c.MaxRequestRecords = CompressionNone, 1<<20 }},
		{"ndjson/gzip/5MiB", func(c *Config) { c.MaxRequestRecords = 1 << 20 }},
		{"json/none/5MiB", func(c *Config) { c.Format, c.Compression, c.MaxRequestRecords = FormatJSON, CompressionNone, 1<<20 }},
		{"kafka-rest-v2/none/5MiB", func(c *Config) {
			c.Format, c.Compression, c.MaxRequestRecords = FormatKafkaRESTv2, CompressionNone, 1<<20
		}},
	} {
		if bc.name[:5] == "kafka" {
			continue // needs a response per record; covered by the tests
		}
		b.Run(bc.name, func(b *testing.B) {
			o := newOutput(b, config(srv.URL, bc.mod))
			require.NoError(b, o.Send(b.Context(), batch)) // warm pools and connections
			b.SetBytes(benchBatchBytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := o.Send(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
