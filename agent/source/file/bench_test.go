package file

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/internal/units"
)

// go test -run '^$' -bench BenchmarkRead ./agent/source/file/ -file.bench-size=64MiB
var benchSize = flag.String("file.bench-size", "512MiB", "size of the file BenchmarkRead generates")

// genLog writes about size bytes of access-log-like lines of ~160 bytes.
func genLog(b *testing.B, path string, size int64) (int64, int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var written int64
	lines := 0
	var buf []byte
	for i := 0; written < size; i++ {
		buf = buf[:0]
		buf = append(buf, "10.0.0."...)
		buf = appendInt(buf, i%250)
		buf = append(buf, ` - - [02/Jan/2025:03:04:05 +0000] "GET /api/v1/items/`...)
		buf = appendInt(buf, i)
		buf = append(buf, `?page=3 HTTP/1.1" 200 `...)
		buf = appendInt(buf, 1000+i%9000)
		buf = append(buf, ` "-" "Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0"`...)
		buf = append(buf, pad[:i%24]...)
		buf = append(buf, '\n')
		n, _ := w.Write(buf)
		written += int64(n)
		lines++
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return written, lines
}

func appendInt(b []byte, v int) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}

// BenchmarkRead reads a file from the page cache: IndexByte is the floor
// (read(2) plus bytes.IndexByte over the same bytes, nothing else); Source
// is the whole file source (--once) emitting every line to a counting emit.
func BenchmarkRead(b *testing.B) {
	size, err := units.ParseByteSize(*benchSize)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "access.log")
	total, nlines := genLog(b, path, int64(size))
	b.Logf("%d bytes, %d lines (%.0f bytes/line)", total, nlines, float64(total)/float64(nlines))

	perLine := func(b *testing.B, lines int, run func() int) {
		var m0, m1 runtime.MemStats
		b.SetBytes(total)
		b.ReportAllocs()
		runtime.ReadMemStats(&m0)
		b.ResetTimer()
		got := 0
		for range b.N {
			got = run()
		}
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		if got != lines {
			b.Fatalf("%d lines, want %d", got, lines)
		}
		n := float64(b.N) * float64(lines)
		b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/n, "allocs/line")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/line")
	}

	b.Run("IndexByte", func(b *testing.B) {
		buf := make([]byte, readChunk)
		perLine(b, nlines, func() int {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			n := 0
			for {
				k, err := f.Read(buf)
				for data := buf[:k]; ; {
					i := bytes.IndexByte(data, '\n')
					if i < 0 {
						break
					}
					n++
					data = data[i+1:]
				}
				if err == io.EOF || k == 0 {
					return n
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	})

	b.Run("Source", func(b *testing.B) {
		cfg := DefaultConfig()
		cfg.Include = []string{path}
		cfg.StartAt = StartAtBeginning
		perLine(b, nlines, func() int {
			src, err := New(cfg, Settings{Name: "bench", Once: true})
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			var nbytes int
			emit := func(_ context.Context, r source.Record) error {
				n++
				nbytes += len(r.Data)
				return nil
			}
			if err := src.Run(context.Background(), emit); err != nil {
				b.Fatal(err)
			}
			return n
		})
	})
}
