package file

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/checkpoint"
	"github.com/kplagent/agent/agent/source"
)

// testConfig follows dir/pattern from the beginning, with short timers.
func testConfig(dir string, patterns ...string) Config {
	c := DefaultConfig()
	for _, p := range patterns {
		c.Include = append(c.Include, filepath.Join(dir, p))
	}
	c.StartAt = StartAtBeginning
	c.ScanInterval = 200 * time.Millisecond
	c.PollInterval = 50 * time.Millisecond
	c.FlushPartialAfter = 300 * time.Millisecond
	c.RotateWait = 500 * time.Millisecond
	return c
}

type rec struct {
	data   string
	cursor source.Cursor
}

// collector is an emit function that keeps copies of what it gets and,
// when commit is set, commits each record at once (as if downstream made it
// durable immediately).
type collector struct {
	mu      sync.Mutex
	recs    []rec
	src     *Source
	commit  bool
	block   chan struct{} // when non-nil, emit waits for it to be closed
	blocked chan struct{} // when non-nil, gets a value when emit starts waiting
	onEmit  func(r source.Record)
	// lag > 0 commits a record only once lag later records arrived: the
	// last lag records of a run stay uncommitted, as if in flight.
	lag     int
	pending []source.Cursor
}

func (c *collector) emit(ctx context.Context, r source.Record) error {
	if c.block != nil {
		if c.blocked != nil {
			select {
			case c.blocked <- struct{}{}:
			default:
			}
		}
		select {
		case <-c.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.onEmit != nil {
		c.onEmit(r)
	}
	c.mu.Lock()
	c.recs = append(c.recs, rec{data: string(r.Data), cursor: r.Cursor})
	c.mu.Unlock()
	if c.commit && c.src != nil {
		if c.lag == 0 {
			c.src.Commit(r.Cursor.FileID, r.Cursor.Offset)
			return nil
		}
		c.pending = append(c.pending, r.Cursor)
		if len(c.pending) > c.lag {
			cur := c.pending[0]
			c.pending = c.pending[1:]
			c.src.Commit(cur.FileID, cur.Offset)
		}
	}
	return nil
}

func (c *collector) records() []rec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rec(nil), c.recs...)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

func (c *collector) lines() []string {
	var out []string
	for _, r := range c.records() {
		out = append(out, r.data)
	}
	return out
}

// running is a source running in the background.
type running struct {
	src  *Source
	col  *collector
	stop context.CancelFunc
	done chan error
}

func start(t *testing.T, cfg Config, set Settings) *running {
	t.Helper()
	if set.Name == "" {
		set.Name = "test"
	}
	src, err := New(cfg, set)
	require.NoError(t, err)
	col := &collector{src: src, commit: true}
	return startWith(t, src, col)
}

func startWith(t *testing.T, src *Source, col *collector) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{src: src, col: col, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, col.emit) }()
	t.Cleanup(func() { r.halt(t) })
	return r
}

// halt stops the source and returns Run's error.
func (r *running) halt(t *testing.T) error {
	t.Helper()
	r.stop()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("source did not stop")
	}
	return nil
}

// waitCount waits until n records arrived.
func (r *running) waitCount(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return r.col.count() >= n }, 20*time.Second, 5*time.Millisecond,
		"want %d records", n)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(data)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// line formats line seq of stream: "<stream> <seq> <padding>".
func line(stream string, seq int) string {
	b := make([]byte, 0, len(stream)+10+len(pad))
	b = append(b, stream...)
	b = append(b, ' ')
	n := strconv.Itoa(seq)
	for i := len(n); i < 8; i++ {
		b = append(b, '0')
	}
	b = append(b, n...)
	b = append(b, ' ')
	b = append(b, pad[:seq%len(pad)]...)
	return string(b)
}

var pad = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs"

func parseLine(s string) (string, int, bool) {
	sp := bytes.IndexByte([]byte(s), ' ')
	if sp < 0 || len(s) < sp+9 {
		return "", 0, false
	}
	n, err := strconv.Atoi(s[sp+1 : sp+9])
	if err != nil {
		return "", 0, false
	}
	if s != line(s[:sp], n) {
		return "", 0, false
	}
	return s[:sp], n, true
}

// streamReport checks the numbered lines of one stream.
type streamReport struct {
	seen    map[int]int // seq -> times
	missing []int
	dups    int
}

// checkStream asserts that lines 0..n-1 of stream arrived, each once unless
// allowDups, in increasing order within each FileID, and that every record
// is a well-formed line.
func checkStream(t *testing.T, recs []rec, stream string, n int, allowDups bool) streamReport {
	t.Helper()
	rep := streamReport{seen: map[int]int{}}
	last := map[string]int{}
	for _, r := range recs {
		st, seq, ok := parseLine(r.data)
		require.True(t, ok, "malformed record %q", r.data)
		if st != stream {
			continue
		}
		if prev, ok := last[r.cursor.FileID]; ok && !allowDups {
			require.Greater(t, seq, prev, "out of order in %s", r.cursor.FileID)
		}
		last[r.cursor.FileID] = seq
		rep.seen[seq]++
		if rep.seen[seq] > 1 {
			rep.dups++
		}
	}
	for i := 0; i < n; i++ {
		if rep.seen[i] == 0 {
			rep.missing = append(rep.missing, i)
		}
	}
	require.Empty(t, rep.missing, "missing lines of %s (of %d)", stream, n)
	if !allowDups {
		require.Zero(t, rep.dups, "duplicates in %s", stream)
	}
	return rep
}

func openStore(t *testing.T, path string) *checkpoint.Store {
	t.Helper()
	st, err := checkpoint.Open(path, checkpoint.Settings{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// logWriter appends numbered lines of one stream to a file, the way an
// application does: through one descriptor opened with O_APPEND, which it
// reopens after a rotation.
type logWriter struct {
	t      *testing.T
	path   string
	stream string
	f      *os.File
	seq    int
	buf    []byte
}

func newLogWriter(t *testing.T, path, stream string) *logWriter {
	w := &logWriter{t: t, path: path, stream: stream}
	w.reopen()
	t.Cleanup(w.close)
	return w
}

// write appends n lines in one write(2).
func (w *logWriter) write(n int) {
	w.buf = w.buf[:0]
	for i := 0; i < n; i++ {
		w.buf = append(w.buf, line(w.stream, w.seq)...)
		w.buf = append(w.buf, '\n')
		w.seq++
	}
	if _, err := w.f.Write(w.buf); err != nil {
		panic(err) // not require: may run outside the test goroutine
	}
}

func (w *logWriter) reopen() {
	w.close()
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	w.f = f
}

func (w *logWriter) close() {
	if w.f != nil {
		_ = w.f.Close()
		w.f = nil
	}
}

// inodeOf returns the "dev:ino:" prefix of the FileIDs of the file at path.
func inodeOf(t *testing.T, path string) string {
	t.Helper()
	st, err := statPath(path)
	require.NoError(t, err)
	return fmt.Sprintf("%d:%d:", st.key.dev, st.key.ino)
}

// waitOpen waits until the source holds the file now at path open.
func waitOpen(t *testing.T, src *Source, path string) {
	t.Helper()
	prefix := inodeOf(t, path)
	require.Eventually(t, func() bool {
		for _, fs := range src.Files() {
			if strings.HasPrefix(fs.FileID, prefix) && (fs.State == "open" || fs.State == "rotated") {
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond, "source never opened %s", path)
}

// waitCaughtUp waits until the source read the file at path to its size.
func waitCaughtUp(t *testing.T, src *Source, path string) {
	t.Helper()
	prefix := inodeOf(t, path)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		for _, fs := range src.Files() {
			if strings.HasPrefix(fs.FileID, prefix) && fs.Offset == fi.Size() {
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond, "source did not catch up with %s", path)
}

// syncBuffer is a log destination tests can read while the source writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}
