package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kplagent/agent/outputs"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// readDeadLetters reads every record of a state directory's dead-letter
// files, in order.
func readDeadLetters(t *testing.T, dir string) []DeadLetterRecord {
	t.Helper()
	parts, err := DeadLetterFiles(dir)
	require.NoError(t, err)
	var out []DeadLetterRecord
	for _, p := range parts {
		f, err := os.Open(p.Path)
		require.NoError(t, err)
		_, err = f.Seek(p.Offset, 0)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r DeadLetterRecord
			require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
			out = append(out, r)
		}
		require.NoError(t, f.Close())
	}
	return out
}

func TestDeadLetter_RotatesAtMaxBytesKeepsMaxFilesThenDropsAndCounts(t *testing.T) {
	dir := t.TempDir()
	m := newMetrics()
	d := openDeadLetter(dir)
	t.Cleanup(func() { _ = d.close() })
	d.configure(DeadLetterConfig{MaxBytes: 2 << 10, MaxFiles: 2}, m, nil)

	data := []byte(strings.Repeat("x", 300)) // ~0.5 KiB a line with its base64
	written := 0
	for i := 0; i < 40; i++ {
		require.NoError(t, d.writeRecord("f", "o", "rejected", "pk", "", data))
		written++
	}
	rotated, err := rotatedFiles(dir)
	require.NoError(t, err)
	require.Len(t, rotated, 2, "max_files rotated files are kept")
	var total int64
	for _, n := range append(rotated, DeadLetterFile) {
		st, err := os.Stat(filepath.Join(dir, n))
		require.NoError(t, err)
		require.LessOrEqual(t, st.Size(), int64(2<<10), n)
		total += st.Size()
	}
	kept := len(readDeadLetters(t, dir))
	require.Positive(t, kept)
	require.Less(t, kept, written)
	dropped := testutil.ToFloat64(m.dropped.WithLabelValues("f", "dead_letter_full"))
	require.Equal(t, float64(written-kept), dropped, "every record not kept is counted as dropped")
	require.Equal(t, int64(written), d.count.Load(), "--once still reports them as not delivered")
}

func TestDeadLetter_OversizedWriteGoesAloneIntoAFreshFile(t *testing.T) {
	dir := t.TempDir()
	d := openDeadLetter(dir)
	t.Cleanup(func() { _ = d.close() })
	d.configure(DeadLetterConfig{MaxBytes: 1 << 10, MaxFiles: 1}, nil, nil)
	require.NoError(t, d.writeRecord("f", "o", "r", "", "", []byte("small")))
	require.NoError(t, d.writeRecord("f", "o", "r", "", "", []byte(strings.Repeat("y", 4<<10))))
	recs := readDeadLetters(t, dir)
	require.Len(t, recs, 2)
	require.Equal(t, "small", *recs[0].Text)
}

func TestDeadLetter_ReasonsAreRedacted(t *testing.T) {
	dir := t.TempDir()
	d := openDeadLetter(dir)
	t.Cleanup(func() { _ = d.close() })
	require.NoError(t, d.writeRecord("f", "o", `rejected: Post "https://u:s3cret@h/i?api_key=s3cret": 400`, "", "", []byte("x")))
	b, err := os.ReadFile(filepath.Join(dir, DeadLetterFile))
	require.NoError(t, err)
	require.NotContains(t, string(b), "s3cret")
	require.Contains(t, string(b), "api_key=REDACTED")
}

func TestCheckStateDir(t *testing.T) {
	empty := t.TempDir()
	require.ErrorContains(t, CheckStateDir(empty), "holds no agent state")
	require.ErrorContains(t, CheckStateDir(filepath.Join(empty, "nope")), "no such file")

	withSpool := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(withSpool, "spool"), 0o700))
	require.NoError(t, CheckStateDir(withSpool))

	withDL := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(withDL, DeadLetterFile), nil, 0o600))
	require.NoError(t, CheckStateDir(withDL))
}

func TestConfig_DeadLetterValidated(t *testing.T) {
	c := DefaultDeadLetterConfig()
	require.NoError(t, c.Validate())
	c.MaxBytes, c.MaxFiles = 10, -1
	err := c.Validate()
	require.ErrorContains(t, err, "max_bytes")
	require.ErrorContains(t, err, "max_files")
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
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

// enospc fails a dead-letter write as a full disk does (os.File.Write's
// *os.PathError) while fail is set, counting the attempts.
func enospc(fail *atomic.Bool, attempts *atomic.Int64) func(f *os.File, b []byte) error {
	return func(f *os.File, b []byte) error {
		if fail.Load() {
			attempts.Add(1)
			return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		if _, err := f.Write(b); err != nil {
			return err
		}
		return f.Sync()
	}
}

// On a full disk the sender retries the dead-letter file with backoff: it
// logged an ERROR at every retry, each naming the file twice ("write X:
// write X: no space left on device"). Now one ERROR for the episode, naming
// the file once, and one line when writes work again.
func TestDeadLetter_FullDiskIsLoggedOncePerEpisodeAndItsEnd(t *testing.T) {
	out := newScripted("o", func(outputs.Batch) error { return outputs.Permanent(errors.New("400 bad record")) })
	r := newSenderRig(t, out, nil, nil)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r.s.log = log
	r.dlq.configure(DefaultDeadLetterConfig(), nil, log)
	var fail atomic.Bool
	var attempts atomic.Int64
	fail.Store(true)
	r.dlq.writeSync = enospc(&fail, &attempts)
	r.appendRecords(3)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.s.run(ctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool { return attempts.Load() >= 10 }, 10*time.Second, time.Millisecond, "the sender retries")
	require.Positive(t, r.spool.Stats().Entries, "kept in the spool while the file cannot take it")
	fail.Store(false)
	require.Eventually(t, func() bool { return r.spool.Stats().Entries == 0 }, 10*time.Second, 5*time.Millisecond)
	require.Len(t, r.deadLettered(), 3)

	got := logs.String()
	var failures []string
	for _, l := range strings.Split(got, "\n") {
		if strings.Contains(l, "no space left on device") {
			failures = append(failures, l)
		}
	}
	require.Len(t, failures, 1, "one line for the episode, not one a retry: %s", got)
	require.Contains(t, failures[0], "level=ERROR")
	require.Contains(t, failures[0], "cannot write the dead-letter file")
	require.Equal(t, 1, strings.Count(failures[0], r.dlq.path), "the file is named once: %s", failures[0])
	require.Equal(t, 1, strings.Count(got, "dead-letter file written again"), got)
	require.Regexp(t, `failed_writes=(1[0-9]|[2-9][0-9]|[0-9]{3,})`, got)
}

// A failure episode that lasts is logged again at most once a minute, and
// a new episode after a good write is logged at once.
func TestDeadLetter_LastingFailureIsLoggedAtMostOnceAMinute(t *testing.T) {
	dir := t.TempDir()
	d := openDeadLetter(dir)
	t.Cleanup(func() { _ = d.close() })
	var logs syncBuffer
	d.configure(DefaultDeadLetterConfig(), nil, slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d.now = func() time.Time { return now }
	var fail atomic.Bool
	var attempts atomic.Int64
	fail.Store(true)
	d.writeSync = enospc(&fail, &attempts)
	write := func() error { return d.writeRaw("f", "", "bad", []byte("x")) }

	for range 7 { // 0s … 60s, 10 s apart
		err := write()
		require.ErrorIs(t, err, syscall.ENOSPC)
		require.Equal(t, "dead-letter: write "+d.path+": no space left on device", err.Error(), "the path once")
		now = now.Add(10 * time.Second)
	}
	got := logs.String()
	require.Equal(t, 2, strings.Count(got, "level=ERROR"), "the first failure, and one a minute later: %s", got)
	require.Contains(t, got, "still cannot be written")
	require.Contains(t, got, "failing_for=1m0s failed_writes=7")

	fail.Store(false)
	require.NoError(t, write())
	require.NoError(t, write())
	require.Equal(t, 1, strings.Count(logs.String(), "dead-letter file written again"))
	fail.Store(true)
	require.Error(t, write())
	require.Equal(t, 3, strings.Count(logs.String(), "level=ERROR"), "a new episode is logged at once")
	require.Equal(t, 2, strings.Count(logs.String(), "cannot write the dead-letter file: "))
}

// A dead-letter file whose last line was torn (a crash or a full disk in
// the middle of a write by another process, a hand edit without its
// newline): the next record was appended to the torn line, and both were
// one line that is not a record (agent dead-letter named it, replay kept
// it: the record was never sent again). The torn line is ended first.
func TestDeadLetter_TornLastLineIsEndedBeforeTheNextRecord(t *testing.T) {
	dir := t.TempDir()
	torn := `{"time":"2026-12-06T20:18:30Z","flow":"f","out`
	require.NoError(t, os.WriteFile(filepath.Join(dir, DeadLetterFile), []byte(torn), 0o600))
	d := openDeadLetter(dir)
	t.Cleanup(func() { _ = d.close() })
	d.configure(DefaultDeadLetterConfig(), newMetrics(), nil)
	require.NoError(t, d.writeRecord("f", "o", "rejected", "pk", "", []byte("first after")))
	require.NoError(t, d.writeRecord("f", "o", "rejected", "pk", "", []byte("second after")))

	data, err := os.ReadFile(filepath.Join(dir, DeadLetterFile))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	require.Len(t, lines, 3, "%s", data)
	require.Equal(t, torn, lines[0], "the torn line stays as it was, on its own")
	for i, want := range []string{"first after", "second after"} {
		var r DeadLetterRecord
		require.NoError(t, json.Unmarshal([]byte(lines[i+1]), &r), lines[i+1])
		require.Equal(t, want, string(r.Data))
	}
}
