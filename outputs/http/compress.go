package http

import (
	"compress/gzip"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// compressor compresses whole request bodies. It is safe for concurrent
// use; its state is pooled, so a request allocates no compression window.
type compressor interface {
	// appendCompressed appends the compressed form of src to dst.
	appendCompressed(dst, src []byte) []byte
	// encoding is the Content-Encoding value.
	encoding() string
}

// newCompressor returns the compressor of a Compression name, nil for none.
func newCompressor(name string) (compressor, error) {
	switch name {
	case CompressionGzip:
		return &gzipCompressor{}, nil
	case CompressionZstd:
		return newZstdCompressor()
	}
	return nil, nil
}

// gzipLevel favours speed: log lines compress well at level 1 and the agent
// must keep up with its sources on a small CPU budget (BENCHMARKS.md).
const gzipLevel = gzip.BestSpeed

// gzipCompressor pools gzip writers (each holds about 800 KiB of state).
type gzipCompressor struct {
	pool sync.Pool // *gzipper
}

// gzipper is a reusable gzip writer that appends to a slice.
type gzipper struct {
	w   *gzip.Writer
	dst []byte
}

func (g *gzipper) Write(p []byte) (int, error) {
	g.dst = append(g.dst, p...)
	return len(p), nil
}

func (c *gzipCompressor) encoding() string { return "gzip" }

func (c *gzipCompressor) appendCompressed(dst, src []byte) []byte {
	g, ok := c.pool.Get().(*gzipper)
	if !ok {
		g = &gzipper{}
		g.w, _ = gzip.NewWriterLevel(g, gzipLevel) // the level is valid
	}
	g.dst = dst
	g.w.Reset(g)
	_, _ = g.w.Write(src) // writes to memory cannot fail
	_ = g.w.Close()
	dst = g.dst
	g.dst = nil
	c.pool.Put(g)
	return dst
}

// zstd settings, from the measurements in BENCHMARKS.md (BenchmarkCompression:
// access log lines in 1 and 5 MiB bodies):
//   - zstdLevel: SpeedFastest (about zstd -1) costs 40-45% less CPU than
//     gzip -1 and sends 13% fewer bytes; SpeedDefault (zstd -3) gains 1-2%
//     of bytes for 20-40% more CPU, the higher levels cost 2-10x more.
//   - zstdWindow: matches between log lines are near. A 64 KiB window
//     compressed as well as 1 and 4 MiB ones (slightly better), and with
//     WithLowerEncoderMem each pooled encoder keeps about 200 KiB of
//     history instead of 2 MiB (peak RSS of the agent 71-73 MiB with a
//     1 MiB window, against 65-69 with gzip); a receiver's decoder needs
//     only that window too.
const (
	zstdLevel  = zstd.SpeedFastest
	zstdWindow = 64 << 10
)

// zstdCompressor compresses with one zstd.Encoder, whose EncodeAll draws on
// a fixed set of encoder states (one per CPU): memory stays bounded however
// many Sends run at once, and a Send waits for a state rather than making
// one.
type zstdCompressor struct {
	enc *zstd.Encoder
}

func newZstdCompressor() (*zstdCompressor, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstdLevel),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithLowerEncoderMem(true), // history of window + one block, not 1 MiB or more
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true),
	)
	if err != nil {
		return nil, fmt.Errorf("http: zstd encoder: %w", err)
	}
	return &zstdCompressor{enc: enc}, nil
}

func (c *zstdCompressor) encoding() string { return "zstd" }

func (c *zstdCompressor) appendCompressed(dst, src []byte) []byte {
	return c.enc.EncodeAll(src, dst)
}
