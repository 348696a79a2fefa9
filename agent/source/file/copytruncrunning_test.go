package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// copytruncate while the source runs but has not read the file's last
// lines yet (it is stuck in emit: backpressure; or between two polls where
// no events come): the lines it had not read are only in the copy when it
// finds the file truncated. They were lost; the copy is now found next to
// the file by its fingerprint and read from the read offset to its end.
// An incomplete last line read before the truncation is read whole from
// the copy, as one record.
func TestCopyTruncate_WhileRunning_UnreadLinesReadFromCopy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		after   int  // lines written to the truncated file
		partial bool // line 99 was incomplete when the source read it
		// noEvents: the source is not stuck; it caught up and waits for
		// its next poll, without file events (NFS): the rotation happens
		// between two polls.
		noEvents bool
	}{
		{name: "empty after"},
		{name: "new lines after", after: 50},
		{name: "new file longer than offset", after: 400}, // found by its first bytes, not its size
		{name: "partial last line", after: 50, partial: true},
		{name: "between two polls", after: 50, noEvents: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			first := linesOf("a", 0, 100)
			if tc.partial {
				first = strings.TrimSuffix(first, "\n")
				first = first[:len(first)-10]
			}
			writeFile(t, p, first)
			cfg := testConfig(dir, "app.log")
			if tc.noEvents {
				disableWatch = true
				t.Cleanup(func() { disableWatch = false })
				cfg.PollInterval, cfg.ScanInterval = time.Second, time.Second
			}
			log, logs := testLogger()
			src, err := New(cfg, Settings{Name: "s", Logger: log})
			require.NoError(t, err)
			col := &collector{src: src, commit: true, block: make(chan struct{}), blocked: make(chan struct{}, 1)}
			if tc.noEvents {
				col.block = nil
			}
			r := startWith(t, src, col)
			if tc.noEvents {
				// Caught up: the rotation below most likely comes before
				// the next poll (if not, the lines are read from app.log
				// and the copy holds nothing more: every line still
				// arrives once).
				r.waitCount(t, 100)
			} else {
				select {
				case <-col.blocked:
				case <-time.After(20 * time.Second):
					t.Fatal("nothing emitted")
				}
			}
			// The source read app.log and is stuck emitting its first
			// line, or waits for its next poll.
			all := linesOf("a", 0, 200)
			appendFile(t, p, all[len(first):])
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, all, string(data))
			writeFile(t, p+".1", string(data))
			writeFile(t, p+".2.gz", string(data)+linesOf("gz", 0, 10)) // never read
			require.NoError(t, os.Truncate(p, 0))
			appendFile(t, p, linesOf("b", 200, 200+tc.after))
			if col.block != nil {
				close(col.block)
			}

			r.waitCount(t, 200+tc.after)
			time.Sleep(300 * time.Millisecond) // nothing more comes
			require.NoError(t, r.halt(t))
			got := map[string]int{}
			for _, l := range col.lines() {
				stream, seq, ok := parseLine(l)
				require.True(t, ok, l)
				require.Contains(t, []string{"a", "b"}, stream, l)
				require.Equal(t, line(stream, seq), l, "a whole line")
				got[l]++
			}
			for i := range 200 {
				require.Equal(t, 1, got[line("a", i)], "line a %d\n%s", i, logs.String())
			}
			for i := 200; i < 200+tc.after; i++ {
				require.Equal(t, 1, got[line("b", i)], "line b %d", i)
			}
			require.Len(t, col.lines(), 200+tc.after)
			if !tc.noEvents {
				require.Contains(t, logs.String(), "reading the rest of its copy")
			}
			require.Equal(t, uint64(1), src.Stats().Truncations)
		})
	}
}
