package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Rotations while the agent was stopped that the lookup next to the file
// did not find: into another directory (logrotate's olddir, found through
// rotated_dirs), and two rotations or more, after which the version of the
// file written between them is in a rotation the agent never saw (read
// whole). Lines [0, 100) of "a" are read before the stop, [100, 150) are
// written after it and rotated with the file, "n" [200, 230) is a version
// never seen, and "b" [150, 200) is what the file holds at the restart. An
// older rotation ("old", read before the stop) is there too, never read.
func TestRestart_RotatedWhileStopped_OlddirAndRotationsNeverSeen(t *testing.T) {
	type env struct {
		t   *testing.T
		dir string
		p   string
	}
	cp := func(e env, to string) {
		data, err := os.ReadFile(e.p)
		require.NoError(e.t, err)
		require.NoError(e.t, os.MkdirAll(filepath.Dir(filepath.Join(e.dir, to)), 0o755))
		writeFile(e.t, filepath.Join(e.dir, to), string(data))
		require.NoError(e.t, os.Truncate(e.p, 0))
	}
	mv := func(e env, to string) {
		require.NoError(e.t, os.MkdirAll(filepath.Dir(filepath.Join(e.dir, to)), 0o755))
		require.NoError(e.t, os.Rename(e.p, filepath.Join(e.dir, to)))
	}
	mvr := func(e env, from, to string) {
		require.NoError(e.t, os.Rename(filepath.Join(e.dir, from), filepath.Join(e.dir, to)))
	}
	gz := func(e env, name string) {
		data, err := os.ReadFile(filepath.Join(e.dir, name))
		require.NoError(e.t, err)
		writeFile(e.t, filepath.Join(e.dir, name+".gz"), string(compressAs(e.t, ".gz", data)))
		require.NoError(e.t, os.Remove(filepath.Join(e.dir, name)))
	}
	for _, tc := range []struct {
		name    string
		olddirs []string
		rotate  func(e env) // app.log holds a [0, 150); leaves what the rotation leaves, app.log with b [150, 200)
		never   bool        // n [200, 230) was written and rotated while stopped
	}{
		{name: "rename into olddir", olddirs: []string{"old"}, rotate: func(e env) {
			mv(e, "old/app.log.1")
			writeFile(e.t, e.p, linesOf("b", 150, 200))
		}},
		{name: "rename into olddir, dateext", olddirs: []string{"old"}, rotate: func(e env) {
			mv(e, "old/app.log-20261206")
			writeFile(e.t, e.p, linesOf("b", 150, 200))
		}},
		{name: "copytruncate into olddir", olddirs: []string{"old"}, rotate: func(e env) {
			cp(e, "old/app.log.1")
			appendFile(e.t, e.p, linesOf("b", 150, 200))
		}},
		{name: "copytruncate into olddir, same name", olddirs: []string{filepath.Join("..", "archive")}, rotate: func(e env) {
			cp(e, "../archive/app.log")
			appendFile(e.t, e.p, linesOf("b", 150, 200))
		}},
		{name: "copytruncate twice", never: true, rotate: func(e env) {
			cp(e, "app.log.1")
			appendFile(e.t, e.p, linesOf("n", 200, 230))
			mvr(e, "app.log.1", "app.log.2")
			cp(e, "app.log.1")
			appendFile(e.t, e.p, linesOf("b", 150, 200))
		}},
		{name: "copytruncate twice, delaycompress", never: true, rotate: func(e env) {
			cp(e, "app.log.1")
			appendFile(e.t, e.p, linesOf("n", 200, 230))
			mvr(e, "app.log.1", "app.log.2")
			gz(e, "app.log.2")
			cp(e, "app.log.1")
			appendFile(e.t, e.p, linesOf("b", 150, 200))
		}},
		{name: "copytruncate twice, dateext, olddir", never: true, olddirs: []string{"old"}, rotate: func(e env) {
			cp(e, "old/app.log-20261205")
			appendFile(e.t, e.p, linesOf("n", 200, 230))
			cp(e, "old/app.log-20261206")
			appendFile(e.t, e.p, linesOf("b", 150, 200))
		}},
		{name: "rename twice", never: true, rotate: func(e env) {
			mv(e, "app.log.1")
			writeFile(e.t, e.p, linesOf("n", 200, 230))
			mvr(e, "app.log.1", "app.log.2")
			mv(e, "app.log.1")
			writeFile(e.t, e.p, linesOf("b", 150, 200))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "log")
			require.NoError(t, os.Mkdir(dir, 0o755))
			p := filepath.Join(dir, "app.log")
			// An older rotation, read before the stop (its version came
			// before a's): older by its name than any rotation made now.
			writeFile(t, filepath.Join(dir, "app.log.7"), linesOf("old", 0, 20))
			past := time.Now().Add(-time.Hour)
			require.NoError(t, os.Chtimes(filepath.Join(dir, "app.log.7"), past, past))
			writeFile(t, p, linesOf("a", 0, 100))
			cpPath := filepath.Join(t.TempDir(), "cp.json")
			cfg := testConfig(dir, "app.log")
			cfg.RotatedDirs = tc.olddirs
			readFirst(t, cfg, cpPath, 100)

			appendFile(t, p, linesOf("a", 100, 150))
			tc.rotate(env{t, dir, p})

			col, logs, _ := runOnce(t, cfg, cpPath)
			got := map[string]int{}
			for _, l := range col.lines() {
				stream, _, ok := parseLine(l)
				require.True(t, ok, l)
				require.Contains(t, []string{"a", "b", "n"}, stream, "a line of an older rotation\n%s", logs)
				got[l]++
			}
			for i := 100; i < 150; i++ {
				require.Equal(t, 1, got[line("a", i)], "line a %d\n%s", i, logs)
			}
			for i := 150; i < 200; i++ {
				require.Equal(t, 1, got[line("b", i)], "line b %d\n%s", i, logs)
			}
			n := 100
			if tc.never {
				n += 30
				for i := 200; i < 230; i++ {
					require.Equal(t, 1, got[line("n", i)], "line n %d (a version never seen)\n%s", i, logs)
				}
				require.Contains(t, logs, "never seen")
			}
			require.Len(t, col.lines(), n, logs)
			require.NotContains(t, logs, "lost")

			// A third start reads nothing again.
			col, logs, _ = runOnce(t, cfg, cpPath)
			require.Empty(t, col.lines(), logs)
		})
	}
}

// A file rotated away while the source ran is read to its end and let go,
// and its checkpoint entry says where it ended (end): at the next start
// nothing is looked for in compressed rotations on its account. A writer
// that never reopened its log goes on writing into the rotated file after
// that, also while the agent is stopped: found by its inode, what it grew
// by is still read.
func TestRestart_RotatedFileLetGoThenGrewWhileStopped_GrowthIsRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	writeFile(t, p, linesOf("a", 0, 50))
	cpPath := filepath.Join(t.TempDir(), "cp.json")
	cfg := testConfig(dir, "app.log")
	st := openStore(t, cpPath)
	r := start(t, cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond})
	r.waitCount(t, 50)
	require.NoError(t, os.Rename(p, p+".1"))
	writeFile(t, p, linesOf("b", 0, 10))
	r.waitCount(t, 60)
	require.Eventually(t, func() bool {
		for _, f := range r.src.Files() {
			if f.State == "rotated" {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "the rotated file was never let go")
	require.NoError(t, r.halt(t))
	require.NoError(t, st.Close())
	data, err := os.ReadFile(cpPath)
	require.NoError(t, err)
	require.Contains(t, string(data), `"end": `, "the rotated file's entry says where it ended")

	appendFile(t, p+".1", linesOf("a", 50, 80))
	col, logs, _ := runOnce(t, cfg, cpPath)
	require.Equal(t, strings.Split(strings.TrimSuffix(linesOf("a", 50, 80), "\n"), "\n"), col.lines(), logs)
}
