package file

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A file rotated by rename while the agent was stopped (logrotate during a
// restart or an upgrade) keeps, under its new name, the lines written
// after the last checkpoint. The source followed app.log only: the renamed
// app.log.1 matched nothing, and those lines were skipped for good while
// the new app.log was read. Its inode is found next to its old path, its
// identity checked, and it is read to its end before it is let go, as a
// rotation seen while running is.
func TestRestart_FileRotatedWhileStopped_RestOfItIsRead(t *testing.T) {
	for _, once := range []bool{false, true} {
		t.Run(fmt.Sprintf("once=%v", once), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			var b strings.Builder
			for i := range 100 {
				b.WriteString(line("a", i) + "\n")
			}
			writeFile(t, p, b.String())
			cpPath := filepath.Join(t.TempDir(), "cp.json")
			cfg := testConfig(dir, "app.log")
			st := openStore(t, cpPath)
			r := start(t, cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond})
			r.waitCount(t, 100)
			require.NoError(t, r.halt(t))
			require.NoError(t, st.Close())

			// Stopped: the writer adds lines, logrotate renames the file and
			// the writer goes on in a new one.
			b.Reset()
			for i := 100; i < 150; i++ {
				b.WriteString(line("a", i) + "\n")
			}
			appendFile(t, p, b.String())
			require.NoError(t, os.Rename(p, p+".1"))
			b.Reset()
			for i := 150; i < 200; i++ {
				b.WriteString(line("a", i) + "\n")
			}
			writeFile(t, p, b.String())
			// An older rotation, read to its end before: not read again.
			writeFile(t, filepath.Join(dir, "app.log.2"), line("old", 0)+"\n")

			log, logs := testLogger()
			st = openStore(t, cpPath)
			src, err := New(cfg, Settings{Name: "s", Checkpoints: st, CheckpointInterval: 10 * time.Millisecond, Logger: log, Once: once})
			require.NoError(t, err)
			col := &collector{src: src, commit: true}
			r = startWith(t, src, col)
			if once {
				select {
				case err := <-r.done:
					require.NoError(t, err)
					close(r.done)
				case <-time.After(20 * time.Second):
					t.Fatal("--once did not end")
				}
			} else {
				r.waitCount(t, 100)
				time.Sleep(300 * time.Millisecond) // nothing more comes
			}
			got := map[int]int{}
			for _, l := range col.lines() {
				stream, seq, ok := parseLine(l)
				require.True(t, ok, l)
				require.Equal(t, "a", stream, "only the lines not read before")
				got[seq]++
			}
			for i := 100; i < 200; i++ {
				require.Equal(t, 1, got[i], "line %d (%d lines read)", i, len(got))
			}
			require.Len(t, got, 100)
			require.Contains(t, logs.String(), "rotated while the source was stopped")
			require.Contains(t, logs.String(), p+".1")
		})
	}
}
