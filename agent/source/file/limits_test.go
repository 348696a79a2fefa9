package file

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/cputime"
)

// openUnder counts this process's descriptors of files under dir.
func openUnder(dir string) (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n, nil
}

// descriptorsOf counts this process's descriptors of the file now at path.
func descriptorsOf(path string) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == path {
			n++
		}
	}
	return n
}

// More files than max_open_files, all written at once: descriptors stay
// within the bound, every file makes progress while the others are written,
// and nothing is lost.
func TestMaxOpenFiles_BoundsDescriptorsAndStarvesNone(t *testing.T) {
	if _, err := openUnder("/"); err != nil {
		t.Skip("no /proc/self/fd")
	}
	dir := t.TempDir()
	const nfiles, limit = 12, 3
	var ws []*logWriter
	for i := range nfiles {
		ws = append(ws, newLogWriter(t, filepath.Join(dir, fmt.Sprintf("f%02d.log", i)), fmt.Sprintf("s%02d", i)))
	}
	cfg := testConfig(dir, "*.log")
	cfg.MaxOpenFiles = limit
	src, err := New(cfg, Settings{Name: "s"})
	require.NoError(t, err)
	col := &collector{src: src, commit: true}
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if n, err := openUnder(dir); err == nil && int64(n) > peak.Load() {
					peak.Store(int64(n))
				}
			}
		}
	}()
	r := startWith(t, src, col)
	// The writers hold one descriptor each under dir too.
	end := time.Now().Add(time.Second)
	checked := false
	for time.Now().Before(end) {
		for _, w := range ws {
			w.write(10)
		}
		pace()
		if !checked && time.Until(end) < 300*time.Millisecond {
			checked = true
			per := map[string]int{}
			for _, rc := range col.records() {
				st, _, _ := parseLine(rc.data)
				per[st]++
			}
			for _, w := range ws {
				require.Positive(t, per[w.stream], "%s starved while all files were written: %v %+v", w.stream, per, src.Files())
			}
		}
	}
	total := 0
	for _, w := range ws {
		total += w.seq
	}
	t0 := time.Now()
	r.waitCount(t, total)
	t.Logf("drained in %v; stats %+v", time.Since(t0), src.Stats())
	close(stopSampling)
	<-sampled
	require.NoError(t, r.halt(t))
	recs := col.records()
	for _, w := range ws {
		checkStream(t, recs, w.stream, w.seq, false)
	}
	require.LessOrEqual(t, peak.Load(), int64(limit+nfiles), "descriptors (source and writers)")
	require.LessOrEqual(t, peak.Load()-nfiles, int64(limit), "source descriptors")
	t.Logf("%d lines from %d files through %d descriptors", total, nfiles, limit)
}

// When files wait for a descriptor, the most recently written go first.
func TestMaxOpenFiles_LeastRecentlyWrittenWait(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	for i, n := range []string{"c", "a", "e", "b", "d"} {
		p := filepath.Join(dir, n+".log")
		writeFile(t, p, n+"\n")
		mt := now.Add(-time.Duration(i) * time.Minute)
		require.NoError(t, os.Chtimes(p, mt, mt))
	}
	cfg := testConfig(dir, "*.log")
	cfg.MaxOpenFiles = 1
	src, err := New(cfg, Settings{Name: "s", Once: true})
	require.NoError(t, err)
	col := &collector{}
	require.NoError(t, src.Run(t.Context(), col.emit))
	require.Equal(t, []string{"c", "a", "e", "b", "d"}, col.lines())
}

// An idle source watching 1,000 files does not busy-poll.
func TestIdle_ThousandFilesUseLittleCPU(t *testing.T) {
	dir := t.TempDir()
	const n = 1000
	for i := range n {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%04d.log", i)), "x\n")
	}
	cfg := DefaultConfig() // production timers: fstat of open files once a second, scan every 10 s
	cfg.Include = []string{filepath.Join(dir, "*.log")}
	cfg.StartAt = StartAtBeginning
	r := start(t, cfg, Settings{})
	r.waitCount(t, n)
	require.Eventually(t, func() bool { return r.src.Stats().FilesOpen == n }, 10*time.Second, 10*time.Millisecond)
	cpu := func() time.Duration {
		d, err := cputime.Process()
		require.NoError(t, err)
		return d
	}
	c0, t0 := cpu(), time.Now()
	require.Eventually(t, func() bool { return time.Since(t0) >= 2*time.Second }, 3*time.Second, 100*time.Millisecond)
	used, wall := cpu()-c0, time.Since(t0)
	require.NoError(t, r.halt(t))
	share := float64(used) / float64(wall)
	t.Logf("idle with %d open files: %v CPU in %v (%.2f%% of a core)", n, used, wall, 100*share)
	require.Less(t, share, 0.05)
}
