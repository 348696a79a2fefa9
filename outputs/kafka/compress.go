package kafka

import (
	"bytes"
	"sync"

	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
)

// lz4BlockSize is the lz4 frame block size of produced batches: 64 KiB, as
// the Java client writes (KafkaLZ4BlockOutputStream). franz-go's default
// compressor uses the lz4 library's default, 4 MiB, which pools a 4 MiB
// buffer per batch being compressed (12 MiB of the agent's heap with three
// partitions) for no better ratio: lz4 matches reach back 64 KiB at most.
const lz4BlockSize = lz4.Block64Kb

// lz4Compressor compresses produce batches with lz4 frames of 64 KiB
// blocks. Every Kafka client reads any block size.
type lz4Compressor struct {
	pool sync.Pool // *lz4.Writer
}

var _ kgo.Compressor = (*lz4Compressor)(nil)

func newLZ4Compressor() *lz4Compressor {
	return &lz4Compressor{pool: sync.Pool{New: func() any {
		w := lz4.NewWriter(nil)
		// Options that cannot fail with these values; on error the
		// writer keeps the library's defaults, which still work.
		_ = w.Apply(lz4.BlockSizeOption(lz4BlockSize), lz4.CompressionLevelOption(lz4.Fast))
		return w
	}}}
}

// Compress writes src as one lz4 frame into dst. On a codec error (none is
// expected writing to memory) the batch goes out uncompressed, as franz-go's
// own compressor does.
func (c *lz4Compressor) Compress(dst *bytes.Buffer, src []byte, _ ...kgo.CompressFlag) ([]byte, kgo.CompressionCodecType) {
	w := c.pool.Get().(*lz4.Writer) //nolint:forcetypeassert // the pool holds only *lz4.Writer
	defer c.pool.Put(w)
	w.Reset(dst)
	if _, err := w.Write(src); err != nil {
		return src, kgo.CodecNone
	}
	if err := w.Close(); err != nil {
		return src, kgo.CodecNone
	}
	w.Reset(nil) // drop dst: the pool must not keep the client's buffer
	return dst.Bytes(), kgo.CodecLz4
}
