package stdin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source"
)

type collector struct {
	mu   sync.Mutex
	recs []source.Record
}

func (c *collector) emit(_ context.Context, r source.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.Data = append([]byte(nil), r.Data...)
	c.recs = append(c.recs, r)
	return nil
}

func (c *collector) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.recs))
	for i, r := range c.recs {
		out[i] = string(r.Data)
	}
	return out
}

func newSource(t *testing.T, cfg Config, r io.Reader) *Source {
	t.Helper()
	s, err := New(cfg, Settings{Name: "in", Reader: r})
	require.NoError(t, err)
	return s
}

func TestRun_LinesUntilEOF(t *testing.T) {
	small := DefaultConfig()
	small.MaxRecordBytes = 8
	noMarker := small
	noMarker.TruncateMarker = ""
	long := strings.Repeat("x", 3*readBufferSize+17)
	for _, tc := range []struct {
		name      string
		cfg       Config
		in        string
		want      []string
		truncated uint64
		partial   uint64
	}{
		{name: "lines", cfg: DefaultConfig(), in: "a\nbb\n\nccc\n", want: []string{"a", "bb", "", "ccc"}},
		{name: "crlf removed", cfg: DefaultConfig(), in: "a\r\nb\r\n", want: []string{"a", "b"}},
		{name: "last line without newline", cfg: DefaultConfig(), in: "a\nlast", want: []string{"a", "last"}, partial: 1},
		{name: "empty stream", cfg: DefaultConfig(), in: "", want: []string{}},
		{name: "exactly max", cfg: small, in: "12345678\n12345678\r\n", want: []string{"12345678", "12345678"}},
		{name: "truncated with marker", cfg: small, in: "123456789\nok\n", want: []string{"1234567\n", "ok"}, truncated: 1},
		{name: "truncated without marker", cfg: noMarker, in: "123456789abcdef\nok\n", want: []string{"12345678", "ok"}, truncated: 1},
		{name: "truncated last line", cfg: small, in: "ok\n123456789abc", want: []string{"ok", "1234567\n"}, truncated: 1, partial: 1},
		{name: "line longer than a read", cfg: DefaultConfig(), in: long + "\nnext\n", want: []string{long, "next"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				r    func(io.Reader) io.Reader
			}{{"whole", func(r io.Reader) io.Reader { return r }}, {"one byte at a time", iotest.OneByteReader}, {"half", iotest.HalfReader}} {
				if r.name == "one byte at a time" && len(tc.in) > 1<<16 {
					continue
				}
				s := newSource(t, tc.cfg, r.r(strings.NewReader(tc.in)))
				var c collector
				require.NoError(t, s.Run(t.Context(), c.emit), r.name)
				require.Equal(t, tc.want, c.lines(), r.name)
				st := s.Stats()
				require.Equal(t, uint64(len(tc.want)), st.Records, r.name)
				require.Equal(t, tc.truncated, st.TruncatedRecords, r.name)
				require.Equal(t, tc.partial, st.PartialLines, r.name)
			}
		})
	}
}

func TestRun_CursorsAreStreamOffsets(t *testing.T) {
	s := newSource(t, DefaultConfig(), strings.NewReader("ab\r\nc\nlast"))
	var c collector
	require.NoError(t, s.Run(t.Context(), c.emit))
	require.Len(t, c.recs, 3)
	require.Equal(t, source.Cursor{Start: 0, Offset: 4}, c.recs[0].Cursor)
	require.Equal(t, source.Cursor{Start: 4, Offset: 6}, c.recs[1].Cursor)
	require.Equal(t, source.Cursor{Start: 6, Offset: 10}, c.recs[2].Cursor)
}

func TestSource_IsNoCommitter(t *testing.T) {
	// A stream cannot be read again: the agent must take the spool path.
	var s any = newSource(t, DefaultConfig(), strings.NewReader(""))
	_, ok := s.(source.Committer)
	require.False(t, ok)
}

func TestRun_ReadErrorIsReturned(t *testing.T) {
	s := newSource(t, DefaultConfig(), iotest.TimeoutReader(strings.NewReader("a\nb\n")))
	var c collector
	err := s.Run(t.Context(), c.emit)
	require.ErrorIs(t, err, iotest.ErrTimeout)
	require.Contains(t, err.Error(), `stdin source "in"`)
}

// A read error ends the stream as its end does: the line begun before it
// was read from the stream and is delivered (counted partial), not dropped.
func TestRun_ReadErrorDeliversThePartialLastLine(t *testing.T) {
	s := newSource(t, DefaultConfig(), iotest.TimeoutReader(strings.NewReader("a\npart")))
	var c collector
	err := s.Run(t.Context(), c.emit)
	require.ErrorIs(t, err, iotest.ErrTimeout)
	require.Equal(t, []string{"a", "part"}, c.lines())
	require.Equal(t, uint64(1), s.Stats().PartialLines)
}

func TestRun_EmitErrorStopsTheSource(t *testing.T) {
	s := newSource(t, DefaultConfig(), strings.NewReader("a\nb\n"))
	boom := io.ErrShortWrite
	err := s.Run(t.Context(), func(context.Context, source.Record) error { return boom })
	require.ErrorIs(t, err, boom)
}

func TestRun_CancelEndsABlockedReadOfAPipe(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer w.Close()
	defer r.Close()
	s := newSource(t, DefaultConfig(), r)
	ctx, cancel := context.WithCancel(t.Context())
	var c collector
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, c.emit) }()
	_, err = w.Write([]byte("one\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(c.lines()) == 1 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel while a read was pending")
	}
	// goleak (TestMain) checks the reading goroutine ended too.
}

func TestRun_NamedPipeReadUntilItsWritersClose(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "in.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	cfg := DefaultConfig()
	cfg.Path = fifo
	s := newSource(t, cfg, nil)
	var c collector
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context(), c.emit) }()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for Run's open
	require.NoError(t, err)
	_, err = w.Write([]byte("x\ny\nz"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end at the FIFO's end")
	}
	require.Equal(t, []string{"x", "y", "z"}, c.lines())
}

func TestRun_CancelWhileANamedPipeHasNoWriter(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "in.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	cfg := DefaultConfig()
	cfg.Path = fifo
	s := newSource(t, cfg, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var c collector
	go func() { done <- s.Run(ctx, c.emit) }()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run stayed blocked opening a FIFO without a writer")
	}
	require.Empty(t, c.lines())
}

func TestRun_MissingPathIsAnError(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "missing")
	s := newSource(t, cfg, nil)
	var c collector
	err := s.Run(t.Context(), c.emit)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "zero max", edit: func(c *Config) { c.MaxRecordBytes = 0 }, want: "max_record_bytes: must be between 1 and"},
		{name: "huge max", edit: func(c *Config) { c.MaxRecordBytes = 1 << 40 }, want: "max_record_bytes: must be between 1 and"},
		{name: "marker too long", edit: func(c *Config) { c.MaxRecordBytes = 2; c.TruncateMarker = "..." }, want: "truncate_marker: must be shorter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := New(DefaultConfig(), Settings{})
	require.ErrorContains(t, err, "name: required")
}

// A line cut to max_record_bytes lost its end with only a counter to say it,
// and `agent tail -` shows no metrics: nothing said it at all. The source
// now logs it at WARN, with the stream, the limit and the line's size, once
// a minute at most (not once per line).
func TestRun_TruncatedLineIsLoggedOnceAMinute(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRecordBytes = 8
	var logs strings.Builder
	long := strings.Repeat("x", readBufferSize+10) // spans reads
	s, err := New(cfg, Settings{Name: "in", Reader: strings.NewReader("ok\n" + long + "\n" + long + "\nend\n"),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	var c collector
	require.NoError(t, s.Run(t.Context(), c.emit))
	require.Len(t, c.lines(), 4)
	require.Equal(t, uint64(2), s.Stats().TruncatedRecords)

	out := logs.String()
	require.Equal(t, 1, strings.Count(out, "longer than max_record_bytes was truncated"), out)
	require.Contains(t, out, "level=WARN")
	require.Contains(t, out, "stream=-")
	require.Contains(t, out, "max_record_bytes=8")
	require.Contains(t, out, fmt.Sprintf("line_bytes=%d", len(long)+1))
	require.Contains(t, out, "kept_bytes=8")
}
