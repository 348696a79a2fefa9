package file

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"

	"github.com/kplagent/agent/agent/source"
)

// compressAs compresses data as a file with the suffix kind would hold.
// bzip2 has no encoder in Go: its case reads a fixture made with bzip2(1)
// that holds lines [0, 150) of stream "a", and checks that data is that.
func compressAs(t *testing.T, kind string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch kind {
	case ".gz":
		w := gzip.NewWriter(&b)
		_, err := w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case ".zst":
		w, err := zstd.NewWriter(nil)
		require.NoError(t, err)
		b.Write(w.EncodeAll(data, nil))
		require.NoError(t, w.Close())
	case ".xz":
		w, err := xz.NewWriter(&b)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case ".lz4":
		w := lz4.NewWriter(&b)
		_, err := w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case ".bz2":
		fixture, err := os.ReadFile(filepath.Join("testdata", "a-0-150.log.bz2"))
		require.NoError(t, err)
		plain, err := io.ReadAll(bzip2.NewReader(bytes.NewReader(fixture)))
		require.NoError(t, err)
		require.Equal(t, string(plain), string(data), "the bzip2 fixture holds lines a [0, 150)")
		return fixture
	default:
		t.Fatalf("no compressor for %s", kind)
	}
	return b.Bytes()
}

// runOnce runs a source with Once until it ends and returns what it
// emitted and logged.
func runOnce(t *testing.T, cfg Config, cpPath string) (*collector, string, Stats) {
	t.Helper()
	log, logs := testLogger()
	st := openStore(t, cpPath)
	src, err := New(cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond, Logger: log, Once: true})
	require.NoError(t, err)
	col := &collector{src: src, commit: true}
	r := startWith(t, src, col)
	select {
	case err := <-r.done:
		require.NoError(t, err)
		close(r.done)
	case <-time.After(20 * time.Second):
		t.Fatal("--once did not end")
	}
	require.True(t, src.ReadToEnd(), "a run with Once that ended by itself read its files to their end")
	require.NoError(t, st.Close())
	return col, logs.String(), src.Stats()
}

// readFirst runs a source over cfg until it emitted n records, and stops
// it: its checkpoint is then at the end of line n-1.
func readFirst(t *testing.T, cfg Config, cpPath string, n int) {
	t.Helper()
	st := openStore(t, cpPath)
	r := start(t, cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond})
	r.waitCount(t, n)
	require.NoError(t, r.halt(t))
	require.NoError(t, st.Close())
}

// A file rotated and compressed while the agent was stopped (logrotate's
// compress without delaycompress): app.log is renamed app.log.1, which is
// compressed into app.log.1.gz and removed. The lines written after the
// checkpoint were only in app.log.1: they were lost, with a warning. The
// compressed rotation is found by the fingerprint of its decompressed
// first bytes, decompressed as a stream from the checkpoint on, and read
// before the new app.log; a third start reads nothing again (the entry says
// the file was read to its end).
func TestRestart_FileRotatedAndCompressedWhileStopped_RestOfItIsRead(t *testing.T) {
	for _, tc := range []struct {
		name     string
		kind     string
		rotated  string // the rotation's name before compression, relative to the log's directory
		olddirs  []string
		copy     bool // copytruncate instead of rename
		multiple bool // a second rotation: the newer rotation (lines [200, 230)) is read whole
	}{
		{name: "gzip", kind: ".gz", rotated: "app.log.1"},
		{name: "gzip dateext", kind: ".gz", rotated: "app.log-20261206"},
		{name: "bzip2", kind: ".bz2", rotated: "app.log.1"},
		{name: "xz", kind: ".xz", rotated: "app.log.1"},
		{name: "zstd", kind: ".zst", rotated: "app.log.1"},
		{name: "lz4", kind: ".lz4", rotated: "app.log.1"},
		{name: "gzip olddir", kind: ".gz", rotated: "old/app.log.1", olddirs: []string{"old"}},
		{name: "gzip olddir absolute", kind: ".gz", rotated: "old/app.log.1", olddirs: []string{"ABS/old"}},
		{name: "copytruncate gzip", kind: ".gz", rotated: "app.log.1", copy: true},
		{name: "copytruncate gzip olddir", kind: ".gz", rotated: "old/app.log.1", olddirs: []string{"old"}, copy: true},
		{name: "gzip twice", kind: ".gz", rotated: "app.log.1", multiple: true},
		{name: "copytruncate gzip twice", kind: ".gz", rotated: "app.log.1", copy: true, multiple: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			writeFile(t, p, linesOf("a", 0, 100))
			cpPath := filepath.Join(t.TempDir(), "cp.json")
			cfg := testConfig(dir, "app.log")
			for _, d := range tc.olddirs {
				cfg.RotatedDirs = append(cfg.RotatedDirs, strings.ReplaceAll(d, "ABS", dir))
			}
			readFirst(t, cfg, cpPath, 100)

			// Stopped: the writer adds lines, logrotate rotates and
			// compresses, the writer goes on in a new (or the truncated)
			// file.
			appendFile(t, p, linesOf("a", 100, 150))
			rotated := filepath.Join(dir, tc.rotated)
			require.NoError(t, os.MkdirAll(filepath.Dir(rotated), 0o755))
			rotate := func(content string) {
				t.Helper()
				if tc.copy {
					data, err := os.ReadFile(p)
					require.NoError(t, err)
					require.Equal(t, content, string(data))
					require.NoError(t, os.Truncate(p, 0))
				} else {
					require.NoError(t, os.Remove(p))
				}
				writeFile(t, rotated+tc.kind, string(compressAs(t, tc.kind, []byte(content))))
			}
			rotate(linesOf("a", 0, 150))
			// Decoys: an older rotation (read before), one whose first
			// bytes are the file's but shorter than its checkpoint (not
			// its content), a compressed file of another log.
			writeFile(t, filepath.Join(dir, "app.log.5.gz"), string(compressAs(t, ".gz", []byte(linesOf("old", 0, 300)))))
			writeFile(t, filepath.Join(dir, "app.log.6.gz"), string(compressAs(t, ".gz", []byte(linesOf("a", 0, 60)))))
			writeFile(t, filepath.Join(dir, "other.log.1.gz"), string(compressAs(t, ".gz", []byte(linesOf("a", 0, 150)+linesOf("x", 0, 5)))))
			newer := ""
			if tc.multiple {
				// A second rotation while stopped: the version of the file
				// written between the two (lines [200, 230) of stream "n")
				// was never seen. The older rotation moves to .2.
				newer = linesOf("n", 200, 230)
				writeFile(t, p, newer)
				old := strings.Replace(rotated, "app.log.1", "app.log.2", 1)
				require.NoError(t, os.Rename(rotated+tc.kind, old+tc.kind))
				rotate(newer)
				if !tc.copy {
					writeFile(t, p, "")
				}
			}
			if tc.copy {
				appendFile(t, p, linesOf("b", 150, 200))
			} else {
				writeFile(t, p, linesOf("b", 150, 200))
			}

			col, logs, stats := runOnce(t, cfg, cpPath)
			got := map[string]int{}
			for _, l := range col.lines() {
				stream, _, ok := parseLine(l)
				require.True(t, ok, l)
				require.Contains(t, []string{"a", "b", "n"}, stream, "a line of a decoy: %s\n%s", l, logs)
				got[l]++
			}
			for i := 100; i < 150; i++ {
				require.Equal(t, 1, got[line("a", i)], "line a %d\n%s", i, logs)
			}
			for i := 150; i < 200; i++ {
				require.Equal(t, 1, got[line("b", i)], "line b %d", i)
			}
			nNewer := 0
			if tc.multiple {
				nNewer = 30
				for i := 200; i < 230; i++ {
					require.Equal(t, 1, got[line("n", i)], "line n %d (a version never seen)\n%s", i, logs)
				}
			}
			require.Len(t, col.lines(), 100+nNewer, logs)
			// The rotation's lines come before the new file's.
			require.Equal(t, line("a", 100), col.lines()[0])
			require.Contains(t, logs, "lines recovered from a file rotated and compressed while the source was stopped")
			require.Contains(t, logs, rotated+tc.kind)
			require.NotContains(t, logs, "lost")
			require.EqualValues(t, 50+nNewer, stats.CompressedRecords)
			require.EqualValues(t, 1+min(nNewer, 1), stats.CompressedRotations)
			require.Zero(t, stats.CompressedErrors)

			// A third start reads nothing again.
			col, logs, _ = runOnce(t, cfg, cpPath)
			require.Empty(t, col.lines(), logs)
		})
	}
}

// A compressed rotation cut short (a full disk while logrotate compressed,
// a damaged copy): what decompresses is sent, the loss of the rest is
// counted and said, and the daemon goes on with the new file.
func TestRestart_CompressedRotationTruncated_WhatCanBeReadIsSentAndTheRestCounted(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, linesOf("a", 0, 100))
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	cfg := testConfig(dir, "app.log")
	readFirst(t, cfg, cpPath, 100)

	appendFile(t, p, linesOf("a", 100, 2000))
	gz := compressAs(t, ".gz", []byte(linesOf("a", 0, 2000)))
	require.NoError(t, os.Remove(p))
	writeFile(t, p+".1.gz", string(gz[:len(gz)*3/4]))
	writeFile(t, p, linesOf("b", 0, 10))

	col, logs, stats := runOnce(t, cfg, cpPath)
	lines := col.lines()
	a, b, bad := 0, 0, 0
	for _, l := range lines {
		stream, seq, ok := parseLine(l)
		switch {
		case !ok:
			bad++ // the last line, cut by the corruption
		case stream == "a":
			require.Equal(t, 100+a, seq, "in order, from the checkpoint")
			a++
		case stream == "b":
			b++
		}
	}
	require.LessOrEqual(t, bad, 1)
	require.Greater(t, a, 500, "the readable part of the rotation was sent")
	require.Less(t, a, 1900)
	require.Equal(t, 10, b)
	require.EqualValues(t, 1, stats.CompressedErrors)
	require.Contains(t, logs, "compressed rotated file is corrupt or truncated")
	require.Contains(t, logs, p+".1.gz")

	// Not read again, nor reported again.
	col, logs, stats = runOnce(t, cfg, cpPath)
	require.Empty(t, col.lines())
	require.Zero(t, stats.CompressedErrors, logs)
}

func TestRotatedName(t *testing.T) {
	for _, tc := range []struct {
		name, base string
		sameDir    bool
		kind       string
		age        rotAge
		ok         bool
	}{
		{"app.log.1", "app.log", true, "", rotAge{kind: ageCount, n: 1}, true},
		{"app.log.1.gz", "app.log", true, ".gz", rotAge{kind: ageCount, n: 1}, true},
		{"app.log.12.ZST", "app.log", true, ".zst", rotAge{kind: ageCount, n: 12}, true},
		{"app.log-20261206.gz", "app.log", true, ".gz", rotAge{kind: ageStamp, s: "20261206"}, true},
		{"app-20261206.log.xz", "app.log", true, ".xz", rotAge{kind: ageStamp, s: "20261206"}, true},
		{"app.2.log.bz2", "app.log", true, ".bz2", rotAge{kind: ageCount, n: 2}, true},
		{"app.log.gz", "app.log", true, ".gz", rotAge{}, true},
		{"app.log", "app.log", true, "", rotAge{}, false},
		{"app.log", "app.log", false, "", rotAge{}, true},
		{"app.log.old", "app.log", true, "", rotAge{}, true},
		{"other.log.1.gz", "app.log", true, "", rotAge{}, false},
		{"application.log.1", "app.log", true, "", rotAge{}, false},
	} {
		kind, age, ok := rotatedName(tc.name, tc.base, tc.sameDir)
		require.Equal(t, tc.ok, ok, tc.name)
		if ok {
			require.Equal(t, tc.kind, kind, tc.name)
			require.Equal(t, tc.age, age, tc.name)
		}
	}
	require.True(t, rotAge{kind: ageCount, n: 1}.newerThan(rotAge{kind: ageCount, n: 2}))
	require.False(t, rotAge{kind: ageCount, n: 2}.newerThan(rotAge{kind: ageCount, n: 1}))
	require.True(t, rotAge{kind: ageStamp, s: "20261207"}.newerThan(rotAge{kind: ageStamp, s: "20261206"}))
	require.False(t, rotAge{kind: ageStamp, s: "20261207"}.newerThan(rotAge{kind: ageCount, n: 1}))
	require.False(t, rotAge{}.newerThan(rotAge{}))
}

// The agent is stopped while it reads a compressed rotation at start (emit
// blocked by backpressure when SIGTERM comes): what was committed is kept,
// and the next start reads the compressed rotation again from there.
func TestRestart_StoppedWhileReadingCompressedRotation_NextStartResumes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, linesOf("a", 0, 100))
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	cfg := testConfig(dir, "app.log")
	readFirst(t, cfg, cpPath, 100)

	appendFile(t, p, linesOf("a", 100, 3000))
	require.NoError(t, os.Remove(p))
	writeFile(t, p+".1.gz", string(compressAs(t, ".gz", []byte(linesOf("a", 0, 3000)))))
	writeFile(t, p, linesOf("b", 0, 10))

	st := openStore(t, cpPath)
	src, err := New(cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	col := &collector{src: src, commit: true}
	var n atomic.Int64
	stuck := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(ctx context.Context, r source.Record) error {
			if n.Add(1) > 1000 {
				close(stuck)
				<-ctx.Done() // backpressure until the stop
				return ctx.Err()
			}
			return col.emit(ctx, r)
		})
	}()
	select {
	case <-stuck:
	case <-time.After(20 * time.Second):
		t.Fatal("the compressed rotation was not read")
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the source did not stop")
	}
	require.NoError(t, st.Close())
	first := col.lines()
	require.Len(t, first, 1000)

	col2, logs, _ := runOnce(t, cfg, cpPath)
	got := map[string]int{}
	for _, l := range append(first, col2.lines()...) {
		got[l]++
	}
	for i := 100; i < 3000; i++ {
		require.Equal(t, 1, got[line("a", i)], "line a %d\n%s", i, logs)
	}
	for i := 0; i < 10; i++ {
		require.Equal(t, 1, got[line("b", i)], "line b %d", i)
	}
	require.Len(t, got, 2910)
}

// A rotation compressed in a format the source cannot read (.lzma) while
// the agent was stopped: the log says lines may be lost and names the
// file, once (the next start does not say it again).
func TestRestart_RotationCompressedInUnreadableFormat_LossIsSaidOnce(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, linesOf("a", 0, 100))
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	cfg := testConfig(dir, "app.log")
	readFirst(t, cfg, cpPath, 100)

	appendFile(t, p, linesOf("a", 100, 150))
	require.NoError(t, os.Remove(p))
	writeFile(t, p+".1.lzma", "\x5d\x00\x00\x80\x00not really lzma")
	writeFile(t, p, linesOf("b", 0, 10))

	col, logs, _ := runOnce(t, cfg, cpPath)
	require.Equal(t, strings.Split(strings.TrimSuffix(linesOf("b", 0, 10), "\n"), "\n"), col.lines())
	// (Which warning depends on whether the new app.log took the old
	// one's inode: then it looks truncated, and its copy is looked for.)
	require.Regexp(t, "no rotation of it was found|no copy of it found", logs)
	require.Contains(t, logs, p+".1.lzma")
	require.Contains(t, logs, "are lost")

	col, logs, _ = runOnce(t, cfg, cpPath)
	require.Empty(t, col.lines())
	require.NotContains(t, logs, "lost")
}

// copytruncate with compress while the agent was stopped, and a stop while
// the compressed copy is read: the source does not say it read its files
// to their end (agent tail --once reports the interruption), and the next
// start reads the rest of the copy without a warning that lines were lost
// (the file's own checkpoint still says it was truncated: its content is
// followed by the copy's entry, not lost).
func TestRestart_StoppedWhileReadingCompressedCopy_NotReadToEnd_NextStartNoLossWarning(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, linesOf("a", 0, 100))
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	cfg := testConfig(dir, "app.log")
	readFirst(t, cfg, cpPath, 100)

	// copytruncate + compress: the copy is compressed, app.log (the same
	// inode) truncated and written again.
	appendFile(t, p, linesOf("a", 100, 3000))
	writeFile(t, p+".1.gz", string(compressAs(t, ".gz", []byte(linesOf("a", 0, 3000)))))
	writeFile(t, p, linesOf("b", 0, 10))

	st := openStore(t, cpPath)
	log, logs1 := testLogger()
	src, err := New(cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond, Logger: log, Once: true})
	require.NoError(t, err)
	col := &collector{src: src, commit: true}
	var n atomic.Int64
	stuck := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(ctx context.Context, r source.Record) error {
			if n.Add(1) > 1000 {
				close(stuck)
				<-ctx.Done() // backpressure until the stop
				return ctx.Err()
			}
			return col.emit(ctx, r)
		})
	}()
	select {
	case <-stuck:
	case <-time.After(20 * time.Second):
		t.Fatal("the compressed copy was not read")
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the source did not stop")
	}
	require.NoError(t, st.Close())
	require.Contains(t, logs1.String(), "compressed", "the copy was read as compressed")
	require.False(t, src.ReadToEnd(), "stopped in the middle of the compressed copy")
	first := col.lines()
	require.Len(t, first, 1000)

	col2, logs, _ := runOnce(t, cfg, cpPath)
	require.NotContains(t, logs, "are lost")
	got := map[string]int{}
	for _, l := range append(first, col2.lines()...) {
		got[l]++
	}
	for i := 100; i < 3000; i++ {
		require.Equal(t, 1, got[line("a", i)], "line a %d\n%s", i, logs)
	}
	for i := 0; i < 10; i++ {
		require.Equal(t, 1, got[line("b", i)], "line b %d", i)
	}
	require.Len(t, got, 2910)
}
