package socket

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kplagent/agent/agent/source"
)

// BenchmarkSocketUnixStream: one client sends ~160-byte lines over a Unix
// stream socket; the source frames them and emits each (to a counter, so
// this is the source's own cost). Reports records/s and MB/s.
func BenchmarkSocketUnixStream(b *testing.B) {
	for _, format := range []string{FormatLines, FormatSyslog} {
		b.Run(format, func(b *testing.B) {
			path := b.TempDir() + "/b.sock"
			if len(path) > 100 {
				path = "/tmp/agent-bench.sock"
			}
			cfg := testConfig("unix://" + path)
			cfg.Format = format
			src, err := New(cfg, Settings{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			var n, bytes atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- src.Run(ctx, func(_ context.Context, r source.Record) error {
					n.Add(1)
					bytes.Add(int64(len(r.Data)))
					return nil
				})
			}()
			<-src.Ready()
			line := "<13>1 2026-12-06T07:10:00.123456Z web01 app 4242 ID47 - " + strings.Repeat("m", 100) + "\n"
			if format == FormatLines {
				line = "2026-12-06T07:10:00.123Z INFO request id=4242 path=/api/v1/orders status=200 " + strings.Repeat("x", 160-78) + "\n"
			}
			c, err := net.Dial("unix", path)
			if err != nil {
				b.Fatal(err)
			}
			w := bufio.NewWriterSize(c, 64<<10)
			b.SetBytes(int64(len(line)))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				w.WriteString(line)
			}
			w.Flush()
			for n.Load() < int64(b.N) {
				time.Sleep(100 * time.Microsecond)
			}
			el := time.Since(start).Seconds()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el, "records/s")
			b.ReportMetric(float64(b.N)*float64(len(line))/el/1e6, "MB/s_in")
			c.Close()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
