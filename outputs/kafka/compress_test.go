package kafka

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The batches are standard lz4 frames as the Java client writes them:
// independent blocks of at most 64 KiB, which every Kafka client and the
// broker read back to the same bytes.
func TestLZ4Compressor_WritesJavaLikeFramesThatDecodeToTheBatch(t *testing.T) {
	t.Parallel()
	var src []byte
	for i := 0; len(src) < 300<<10; i++ {
		src = append(src, line(i)...)
	}
	c := newLZ4Compressor()
	for range 2 { // a pooled writer is reused
		var dst bytes.Buffer
		out, codec := c.Compress(&dst, src)
		require.Equal(t, kgo.CodecLz4, codec)
		require.Less(t, len(out), len(src)/3, "log lines compress")
		require.Equal(t, uint32(0x184D2204), binary.LittleEndian.Uint32(out), "lz4 frame magic")
		flg, bd := out[4], out[5]
		require.Equal(t, byte(0x40), flg&0xC0, "frame version 01")
		require.NotZero(t, flg&0x20, "independent blocks (Java's reader needs them)")
		require.Equal(t, byte(4<<4), bd, "64 KiB blocks")
		got, err := io.ReadAll(lz4.NewReader(bytes.NewReader(out)))
		require.NoError(t, err)
		require.Equal(t, src, got)
	}
}
