package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const benchEntry = 50 << 10 // a KPL aggregate's usual size (the KPL's AggregationMaxSize)

func benchConfig(b *testing.B, sync SyncPolicy) Config {
	cfg := DefaultConfig()
	cfg.Dir = b.TempDir()
	cfg.MaxBytes = 1 << 40
	cfg.MinFreeBytes = 0
	cfg.Sync = sync
	return cfg
}

// rawWrite writes n entries with os.File.Write and one final Sync: the
// sequential write speed of the disk the spool is on, for the same bytes.
func rawWrite(b *testing.B, dir string, entry []byte, n int) time.Duration {
	path := filepath.Join(dir, "raw")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	require.NoError(b, err)
	start := time.Now()
	for range n {
		if _, err := f.Write(entry); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, f.Sync())
	d := time.Since(start)
	require.NoError(b, f.Close())
	require.NoError(b, os.Remove(path))
	return d
}

// BenchmarkThroughput: one appender and one reader that acknowledges each
// entry, 50 KiB entries, against the raw sequential write speed of the same
// disk for the same bytes (measured right after, in the same run). Run it
// with a count large enough to leave the page cache, e.g.
// -benchtime=40000x (2 GB).
func BenchmarkThroughput(b *testing.B) {
	for _, sync := range []SyncPolicy{SyncInterval, SyncNever} {
		b.Run("sync="+string(sync), func(b *testing.B) {
			cfg := benchConfig(b, sync)
			entry := payload(1, benchEntry)
			s, err := Open(cfg, Settings{})
			require.NoError(b, err)
			ctx := context.Background()
			b.SetBytes(int64(len(entry)))
			b.ResetTimer()
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 0, len(entry))
				for range b.N {
					id, got, err := s.ReadNext(ctx, buf)
					if err == nil {
						err = s.Ack(id)
					}
					if err != nil {
						done <- err
						return
					}
					buf = got
				}
				done <- nil
			}()
			for range b.N {
				if _, err := s.Append(ctx, entry); err != nil {
					b.Fatal(err)
				}
			}
			require.NoError(b, <-done)
			require.NoError(b, s.Sync())
			spool := time.Since(start)
			b.StopTimer()
			st := s.Stats()
			require.NoError(b, s.Close())
			raw := rawWrite(b, cfg.Dir, entry, b.N)
			mb := float64(b.N*len(entry)) / 1e6
			b.ReportMetric(mb/spool.Seconds(), "spool-MB/s")
			b.ReportMetric(mb/raw.Seconds(), "raw-MB/s")
			b.ReportMetric(raw.Seconds()/spool.Seconds()*100, "%-of-raw")
			b.ReportMetric(float64(st.Fsyncs), "fsyncs")
		})
	}
}

// BenchmarkGroupCommit: eight appenders with sync: always. Appenders that
// arrive during an fsync share the next one, so fsyncs/s stays well below
// appends/s.
func BenchmarkGroupCommit(b *testing.B) {
	for _, size := range []int{1 << 10, benchEntry} {
		b.Run(fmt.Sprintf("appenders=8/entry=%dKiB", size>>10), func(b *testing.B) {
			cfg := benchConfig(b, SyncAlways)
			s, err := Open(cfg, Settings{})
			require.NoError(b, err)
			entry := payload(1, size)
			b.SetBytes(int64(size))
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			per := (b.N + 7) / 8
			for range 8 {
				wg.Go(func() {
					for range per {
						if _, err := s.Append(context.Background(), entry); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			d := time.Since(start)
			b.StopTimer()
			st := s.Stats()
			require.NoError(b, s.Close())
			b.ReportMetric(float64(st.Appended)/d.Seconds(), "appends/s")
			b.ReportMetric(float64(st.Fsyncs)/d.Seconds(), "fsyncs/s")
			b.ReportMetric(float64(st.Appended)/float64(max(st.Fsyncs, 1)), "appends/fsync")
		})
	}
}

// BenchmarkAppend measures Append alone (sync: never, nothing read).
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{100, 4 << 10, benchEntry} {
		b.Run(fmt.Sprintf("entry=%dB", size), func(b *testing.B) {
			s, err := Open(benchConfig(b, SyncNever), Settings{})
			require.NoError(b, err)
			defer s.Close()
			entry := payload(1, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Append(context.Background(), entry); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// memUse is the heap in use and the resident set after a full GC.
func memUse() (heap, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				rss = kb << 10
			}
		}
	}
	return ms.HeapInuse, rss
}

// buildBacklog appends size bytes of 50 KiB entries, reads and acknowledges
// every other of the first 1000 at most (so there are bitmaps), closes, reopens
// (recovery) and reads one more entry. It returns the memory in use while
// the spool is open on that backlog, and removes the files.
func buildBacklog(t testing.TB, dir string, size int64) (heap, rss uint64, st Stats) {
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.MaxBytes = 1 << 40
	cfg.MinFreeBytes = 0
	cfg.Sync = SyncNever
	s, err := Open(cfg, Settings{})
	require.NoError(t, err)
	ctx := context.Background()
	entry := payload(1, benchEntry)
	var entries int
	for n := int64(0); n < size; n += int64(len(entry)) {
		_, err := s.Append(ctx, entry)
		require.NoError(t, err)
		entries++
	}
	buf := make([]byte, 0, benchEntry)
	for i := range min(1000, entries/2) {
		id, b, err := s.ReadNext(ctx, buf)
		require.NoError(t, err)
		if i%2 == 0 {
			require.NoError(t, s.Ack(id))
		}
		buf = b
	}
	require.NoError(t, s.Close())
	s, err = Open(cfg, Settings{})
	require.NoError(t, err)
	_, _, err = s.ReadNext(ctx, buf)
	require.NoError(t, err)
	heap, rss = memUse()
	st = s.Stats()
	require.NoError(t, s.Close())
	require.NoError(t, os.RemoveAll(dir))
	return heap, rss, st
}

// BenchmarkBacklogMemory reports the memory in use with the spool open on a
// 40 MiB and on a 4 GiB backlog: it does not grow with the backlog. The
// 4 GiB case writes 4 GiB and runs only with SPOOL_BENCH_BIG=1:
//
//	SPOOL_BENCH_BIG=1 go test -run '^$' -bench BacklogMemory -benchtime 1x ./spool/
func BenchmarkBacklogMemory(b *testing.B) {
	for _, size := range []int64{40 << 20, 4 << 30} {
		b.Run(fmt.Sprintf("backlog=%dMiB", size>>20), func(b *testing.B) {
			if size > 1<<30 && os.Getenv("SPOOL_BENCH_BIG") != "1" {
				b.Skip("set SPOOL_BENCH_BIG=1 to build a 4 GiB backlog")
			}
			var heap, rss uint64
			var st Stats
			for i := 0; b.Loop(); i++ {
				heap, rss, st = buildBacklog(b, filepath.Join(b.TempDir(), strconv.Itoa(i)), size)
			}
			b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
			b.ReportMetric(float64(st.Bytes)/(1<<20), "backlog-MiB")
			b.ReportMetric(float64(st.Segments), "segments")
		})
	}
}

// TestMemory_HeapDoesNotGrowWithTheBacklog is the small, default-run
// version of BenchmarkBacklogMemory: 16 times the backlog, same heap.
func TestMemory_HeapDoesNotGrowWithTheBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MiB")
	}
	small, _, st1 := buildBacklog(t, filepath.Join(t.TempDir(), "small"), 12<<20)
	big, _, st2 := buildBacklog(t, filepath.Join(t.TempDir(), "big"), 192<<20)
	t.Logf("heap in use: %d KiB with %d MiB on disk, %d KiB with %d MiB", small>>10, st1.Bytes>>20, big>>10, st2.Bytes>>20)
	require.Greater(t, st2.Bytes, 15*st1.Bytes)
	require.Less(t, int64(big)-int64(small), int64(1<<20), "the bigger backlog costs more than 1 MiB of heap")
}
