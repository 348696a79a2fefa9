package http

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/outputs"
)

func TestSend_CompressionSetsContentEncoding(t *testing.T) {
	t.Parallel()
	data := userLines(2000)
	for _, tc := range []struct{ compression, encoding string }{
		{CompressionZstd, "zstd"},
		{CompressionGzip, "gzip"},
		{CompressionNone, ""},
	} {
		t.Run(tc.compression, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var got bytes.Buffer
			var wire int
			srv := startServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				require.NoError(t, err)
				require.Equal(t, tc.encoding, r.Header.Get("Content-Encoding"))
				mu.Lock()
				defer mu.Unlock()
				wire += len(body)
				switch tc.encoding {
				case "zstd":
					d, err := zstd.NewReader(nil)
					require.NoError(t, err)
					defer d.Close()
					body, err = d.DecodeAll(body, nil)
					require.NoError(t, err)
				case "gzip":
					zr, err := gzip.NewReader(bytes.NewReader(body))
					require.NoError(t, err)
					body, err = io.ReadAll(zr)
					require.NoError(t, err)
				}
				got.Write(body)
			})
			o := newOutput(t, config(srv.URL, func(c *Config) { c.Compression = tc.compression; c.MaxRequestBytes = 16 << 10 }))
			// Sends at once share the pooled encoders.
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Go(func() { errs[i] = o.Send(t.Context(), plainBatch(data[i*500:(i+1)*500]...)) })
			}
			wg.Wait()
			for _, err := range errs {
				require.NoError(t, err)
			}
			lines := strings.Split(strings.TrimSuffix(got.String(), "\n"), "\n")
			require.ElementsMatch(t, data, lines)
			if tc.encoding != "" {
				require.Less(t, wire, got.Len()/2, "compressed")
			}
		})
	}
}

// Compressing a request allocates nothing once the encoders exist: no
// window per request.
func TestCompressor_NoAllocationPerRequest(t *testing.T) {
	src := accessLog(1 << 20)
	for _, name := range []string{CompressionZstd, CompressionGzip} {
		t.Run(name, func(t *testing.T) {
			c, err := newCompressor(name)
			require.NoError(t, err)
			dst := c.appendCompressed(nil, src)
			require.Less(t, len(dst), len(src)/3)
			allocs := testing.AllocsPerRun(20, func() { dst = c.appendCompressed(dst[:0], src) })
			if !raceEnabled { // sync.Pool drops items under the race detector
				require.Zero(t, allocs)
			}
		})
	}
}

func TestFromURL_Compression(t *testing.T) {
	t.Parallel()
	u, err := url.Parse("http://collector:8080/ingest")
	require.NoError(t, err)
	tests := []struct {
		gzip        bool
		compression string
		want        string
		err         string
	}{
		{true, "", CompressionGzip, ""},
		{false, "", CompressionNone, ""},
		{true, "zstd", CompressionZstd, ""},
		{true, "none", CompressionNone, ""},
		{false, "none", CompressionNone, ""},
		{false, "zstd", CompressionZstd, ""},
		{false, "gzip", CompressionGzip, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%v/%s", tc.gzip, tc.compression), func(t *testing.T) {
			t.Parallel()
			c, err := fromURL(u, outputs.TailFlags{Gzip: tc.gzip, Compression: tc.compression})
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, c.(*Config).Compression)
		})
	}
}
