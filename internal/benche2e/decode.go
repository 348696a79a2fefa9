package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/kplagent/agent/aggregate"
	httpout "github.com/kplagent/agent/outputs/http"
)

// countRecords returns the user records in a request body the agent's HTTP
// output sent, whatever its format and compression: ndjson lines, raw (one
// KPL record, keys in headers) and raw-packed (frames of KPL records) bodies
// are deaggregated record by record (MD5 checked), gzip and zstd bodies
// decompressed first. It lets the sink check that every line arrived with
// --http-format raw|raw-packed and --compression gzip|zstd; the decoding
// costs the sink CPU, so MB/s measured with it are not comparable with the
// counting sink's.
func countRecords(r *http.Request, body []byte) (int64, error) {
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		if body, err = io.ReadAll(zr); err != nil {
			return 0, err
		}
	case "zstd":
		d := zstdDecoders.Get().(*zstd.Decoder)
		defer zstdDecoders.Put(d)
		var err error
		if body, err = d.DecodeAll(body, nil); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("Content-Encoding %q", enc)
	}
	switch r.Header.Get("Content-Type") {
	case httpout.PackedContentType:
		frames, err := httpout.ParsePacked(body)
		if err != nil {
			return 0, err
		}
		var n int64
		for _, f := range frames {
			recs, err := aggregate.DecodeKinesisRecord(f.PartitionKey, f.ExplicitHashKey, f.Data)
			if err != nil {
				return 0, err
			}
			n += int64(len(recs))
		}
		return n, nil
	case "application/octet-stream":
		recs, err := aggregate.DecodeKinesisRecord(r.Header.Get("X-Partition-Key"), r.Header.Get("X-Explicit-Hash-Key"), body)
		return int64(len(recs)), err
	}
	return int64(bytes.Count(body, []byte{'\n'})), nil
}

var zstdDecoders = sync.Pool{New: func() any {
	d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)) // no options that can fail
	return d
}}
