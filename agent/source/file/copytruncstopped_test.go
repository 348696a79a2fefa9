package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lines returns lines [from, to) of stream, each with its newline.
func linesOf(stream string, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString(line(stream, i) + "\n")
	}
	return b.String()
}

// A file rotated with copytruncate while the agent was stopped: the lines
// written after the last checkpoint are only in the copy (app.log.1, a new
// inode), and app.log, its checkpoint past its new size (or its first bytes
// changed), is read again from 0. The copy was never read: those lines were
// lost. At start the copy is found next to the file by the checkpoint's
// fingerprint and read from the checkpoint to its end, once.
func TestRestart_FileCopyTruncatedWhileStopped_RestOfCopyIsRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		// first: lines [0, first) are read before the stop; then lines up
		// to 200 are appended, the file is copied and truncated, and lines
		// [200, 200+after) are written to the truncated file.
		first, after int
		fpBytes      int    // 0: the default
		copyName     string // the copy's name
		include      []string
		noBirth      bool // a file system without birth times: other first bytes look like a new file
	}{
		{name: "empty after", first: 100, copyName: "app.log.1"},
		{name: "new lines after", first: 100, after: 50, copyName: "app.log.1"},
		{name: "new file longer than checkpoint", first: 100, after: 400, copyName: "app.log.1"},
		{name: "new lines after, no birth times", first: 100, after: 50, copyName: "app.log.1", noBirth: true},
		{name: "dateext", first: 100, after: 10, copyName: "app.log-20261206"},
		{name: "extension kept", first: 100, after: 10, copyName: "app-20261206.log"},
		// The patterns match the copy too: found by the first scan as a new
		// file, it would be read from its start (lines read before again)
		// or, with start_at end, from its end (the lines lost).
		{name: "copy matched too", first: 100, after: 10, copyName: "app.log.1", include: []string{"app.log", "app.log.1"}},
		// The file was shorter than its fingerprint when it was
		// checkpointed: the fingerprint covers every byte up to the
		// checkpoint, so the copy is known to begin with exactly them.
		{name: "short fingerprint", first: 3, after: 2, fpBytes: 64 << 10, copyName: "app.log.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noBirth {
				useBirthTime = false
				t.Cleanup(func() { useBirthTime = true })
			}
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			writeFile(t, p, linesOf("a", 0, tc.first))
			cpPath := filepath.Join(t.TempDir(), "cp.json")
			cfg := testConfig(dir, "app.log")
			if tc.include != nil {
				cfg = testConfig(dir, tc.include...)
			}
			if tc.fpBytes != 0 {
				cfg.FingerprintBytes = tc.fpBytes
			}
			st := openStore(t, cpPath)
			r := start(t, cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond})
			r.waitCount(t, tc.first)
			require.NoError(t, r.halt(t))
			require.NoError(t, st.Close())

			// Stopped: the writer adds lines, logrotate copies the file
			// and truncates it, the writer goes on in the truncated file.
			appendFile(t, p, linesOf("a", tc.first, 200))
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			writeFile(t, filepath.Join(dir, tc.copyName), string(data))
			// Decoys, each newer than the copy (of several copies, the last
			// modified is read): a compressed copy is never read, even one
			// whose bytes would match (a .gz holding plain text is the
			// worst case); an older copy of an earlier content has other
			// first bytes; another file of the directory with the same
			// first bytes is not a copy of app.log by its name.
			later := time.Now().Add(time.Hour)
			for name, data := range map[string]string{
				"app.log.3.gz": string(data) + linesOf("gz", 0, 10),
				"app.log.2":    linesOf("old", 0, 300),
				"other.log":    string(data) + linesOf("other", 0, 10),
			} {
				writeFile(t, filepath.Join(dir, name), data)
				require.NoError(t, os.Chtimes(filepath.Join(dir, name), later, later))
			}
			require.NoError(t, os.Truncate(p, 0))
			if tc.after > 0 {
				appendFile(t, p, linesOf("b", 200, 200+tc.after))
			}

			log, logs := testLogger()
			st = openStore(t, cpPath)
			src, err := New(cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond, Logger: log, Once: true})
			require.NoError(t, err)
			col := &collector{src: src, commit: true}
			r = startWith(t, src, col)
			select {
			case err := <-r.done:
				require.NoError(t, err)
				close(r.done)
			case <-time.After(20 * time.Second):
				t.Fatal("--once did not end")
			}
			require.NoError(t, st.Close())
			got := map[string]int{}
			for _, l := range col.lines() {
				stream, seq, ok := parseLine(l)
				require.True(t, ok, l)
				got[stream+" "+line("", seq)]++
				switch stream {
				case "a":
					require.True(t, seq >= tc.first && seq < 200, "line a %d was read before the stop", seq)
				case "b":
				default:
					t.Fatalf("line %q is not of app.log or its copy", l)
				}
			}
			for i := tc.first; i < 200; i++ {
				require.Equal(t, 1, got["a "+line("", i)], "line a %d (%d lines read)\n%s", i, len(got), logs.String())
			}
			for i := 200; i < 200+tc.after; i++ {
				require.Equal(t, 1, got["b "+line("", i)], "line b %d", i)
			}
			require.Len(t, col.lines(), 200-tc.first+tc.after)
			require.Contains(t, logs.String(), "copied while the source was stopped")
			require.Contains(t, logs.String(), filepath.Join(dir, tc.copyName))

			// Once only: a third start reads nothing again.
			st = openStore(t, cpPath)
			src, err = New(cfg, Settings{Name: "s", Checkpoints: st, Once: true})
			require.NoError(t, err)
			col = &collector{src: src, commit: true}
			r = startWith(t, src, col)
			select {
			case err := <-r.done:
				require.NoError(t, err)
				close(r.done)
			case <-time.After(20 * time.Second):
				t.Fatal("--once did not end")
			}
			require.Empty(t, col.lines())
		})
	}
}

func TestCopyName(t *testing.T) {
	for _, tc := range []struct {
		name, base string
		want       bool
	}{
		{"app.log.1", "app.log", true},
		{"app.log-20261206", "app.log", true},
		{"app.log_old", "app.log", true},
		{"app-20261206.log", "app.log", true},
		{"app.1.log", "app.log", true},
		{"app.log", "app.log", false},
		{"app.log.1.gz", "app.log", false},
		{"app.log.2.GZ", "app.log", false},
		{"app.log-20261206.zst", "app.log", false},
		{"app.log.1.bz2", "app.log", false},
		{"app.log.1.xz", "app.log", false},
		{"application.log", "app.log", false},
		{"other.log", "app.log", false},
		{"app", "app.log", false},
		{"messages.1", "messages", true},
		{"messages", "messages", false},
	} {
		require.Equal(t, tc.want, copyName(tc.name, tc.base), "%s of %s", tc.name, tc.base)
	}
}

// The source read the file to its end before it stopped, and the file was
// then copied and truncated: the copy holds nothing after the checkpoint.
// Nothing is read from it (also where the patterns match it, which would
// read it again from its start) and nothing is said to be lost. Without
// any copy, the log says the lines after the checkpoint are lost.
func TestRestart_FileCopyTruncatedWhileStopped_NothingAfterCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name    string
		include []string
		noCopy  bool
	}{
		{name: "copy", include: []string{"app.log"}},
		{name: "copy matched too", include: []string{"app.log", "app.log.1"}},
		{name: "no copy", include: []string{"app.log"}, noCopy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			writeFile(t, p, linesOf("a", 0, 100))
			cpPath := filepath.Join(t.TempDir(), "cp.json")
			cfg := testConfig(dir, tc.include...)
			st := openStore(t, cpPath)
			r := start(t, cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond})
			r.waitCount(t, 100)
			require.NoError(t, r.halt(t))
			require.NoError(t, st.Close())

			if !tc.noCopy {
				data, err := os.ReadFile(p)
				require.NoError(t, err)
				writeFile(t, p+".1", string(data))
			}
			require.NoError(t, os.Truncate(p, 0))
			appendFile(t, p, linesOf("b", 200, 210))

			log, logs := testLogger()
			st = openStore(t, cpPath)
			src, err := New(cfg, Settings{Name: "s", Checkpoints: st, Logger: log, Once: true})
			require.NoError(t, err)
			col := &collector{src: src, commit: true}
			r = startWith(t, src, col)
			select {
			case err := <-r.done:
				require.NoError(t, err)
				close(r.done)
			case <-time.After(20 * time.Second):
				t.Fatal("--once did not end")
			}
			require.NoError(t, st.Close())
			require.Equal(t, strings.Split(strings.TrimSuffix(linesOf("b", 200, 210), "\n"), "\n"), col.lines())
			if tc.noCopy {
				require.Contains(t, logs.String(), "are lost")
			} else {
				require.NotContains(t, logs.String(), "lost")
			}
		})
	}
}
