package journald

import (
	"context"
	"encoding/json"
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
	"github.com/kplagent/agent/agent/source/journald/journaldtest"
)

// fixture is a fake journal, the fake journalctl's start log and a
// checkpoint store.
type fixture struct {
	j     *journaldtest.Journal
	log   string
	store *checkpoint.Store
	dir   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{j: journaldtest.NewJournal(t, dir), log: filepath.Join(dir, "starts.log"), dir: dir}
	t.Setenv("FAKE_JOURNAL", f.j.Path)
	t.Setenv("FAKE_JOURNAL_LOG", f.log)
	st, err := checkpoint.Open(filepath.Join(dir, "state", "checkpoints.json"), checkpoint.Settings{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	f.store = st
	return f
}

// starts returns the fake's argument lines, one per start.
func (f *fixture) starts() []string {
	b, _ := os.ReadFile(f.log)
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (f *fixture) config(mod func(*Config)) Config {
	c := DefaultConfig()
	c.JournalctlPath = fakeJournalctl
	c.StartAt = StartAtBeginning
	if mod != nil {
		mod(&c)
	}
	return c
}

// collector gathers emitted records; commit decides whether each is
// committed at once.
type collector struct {
	mu     sync.Mutex
	msgs   []string
	recs   []map[string]any
	curs   []source.Cursor
	src    *Source
	commit func(n int) bool
}

func (c *collector) emit(_ context.Context, r source.Record) error {
	var m map[string]any
	if err := json.Unmarshal(r.Data, &m); err != nil {
		return err
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, m["MESSAGE"].(string))
	c.recs = append(c.recs, m)
	c.curs = append(c.curs, r.Cursor)
	n := len(c.msgs)
	c.mu.Unlock()
	if c.commit == nil || c.commit(n) {
		c.src.Commit(r.Cursor.FileID, r.Cursor.Offset)
	}
	return nil
}

func (c *collector) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

// run starts the source; stop cancels it and returns Run's error.
func run(t *testing.T, s *Source, c *collector) (stop func() error) {
	t.Helper()
	c.src = s
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, c.emit) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func messages(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, journaldtest.Message(i))
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 20*time.Second, 10*time.Millisecond, what)
}

func TestRun_ReadsTheJournalAndResumesAfterTheCommittedCursor(t *testing.T) {
	f := newFixture(t)
	f.j.Append(t, 10)
	s, err := New(f.config(nil), Settings{Name: "j", Checkpoints: f.store, CheckpointInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	c := &collector{commit: func(n int) bool { return n <= 7 }} // 8..10 never become durable
	stop := run(t, s, c)
	waitFor(t, "10 records", func() bool { return len(c.messages()) == 10 })
	require.Equal(t, messages(0, 10), c.messages())
	require.NoError(t, stop())

	c.mu.Lock()
	for i, cur := range c.curs {
		require.Equal(t, source.Cursor{FileID: FileID, Start: int64(i), Offset: int64(i + 1)}, cur)
	}
	rec := c.recs[0]
	c.mu.Unlock()
	require.Equal(t, journaldtest.Cursor(0), rec["__CURSOR"])
	require.Equal(t, "app.service", rec["_SYSTEMD_UNIT"])
	require.Equal(t, "6", rec["PRIORITY"])
	_, err = time.Parse(time.RFC3339Nano, rec["__REALTIME_TIMESTAMP"].(string))
	require.NoError(t, err)
	require.NotContains(t, rec, "__MONOTONIC_TIMESTAMP")

	e, ok := f.store.Get("j", FileID)
	require.True(t, ok)
	require.Equal(t, journaldtest.Cursor(6), e.Cursor, "the cursor of the last committed record")
	require.Equal(t, journaldtest.Cursor(6), s.Stats().Committed)

	// A new source (an agent restart) reads what was not committed, and
	// what came since.
	f.j.Append(t, 5)
	s2, err := New(f.config(nil), Settings{Name: "j", Checkpoints: f.store})
	require.NoError(t, err)
	c2 := &collector{}
	stop = run(t, s2, c2)
	waitFor(t, "8 records", func() bool { return len(c2.messages()) == 8 })
	require.Equal(t, messages(7, 15), c2.messages())
	require.NoError(t, stop())
	starts := f.starts()
	require.Len(t, starts, 2)
	require.Contains(t, starts[0], "--no-tail")
	require.NotContains(t, starts[0], "--after-cursor")
	require.Contains(t, starts[1], "--after-cursor="+journaldtest.Cursor(6))
	e, _ = f.store.Get("j", FileID)
	require.Equal(t, journaldtest.Cursor(14), e.Cursor)
}

func TestRun_JournalctlDyingMidStreamIsRestartedAfterTheLastEmittedEntry(t *testing.T) {
	f := newFixture(t)
	f.j.Append(t, 10)
	t.Setenv("FAKE_JOURNAL_DIE", "4") // the first start writes 4 entries and half of the 5th
	s, err := New(f.config(nil), Settings{Name: "j"})
	require.NoError(t, err)
	c := &collector{commit: func(int) bool { return false }} // nothing durable: the restart must not wait for commits
	stop := run(t, s, c)
	waitFor(t, "10 records", func() bool { return len(c.messages()) == 10 })
	f.j.Append(t, 2)
	waitFor(t, "12 records", func() bool { return len(c.messages()) == 12 })
	require.NoError(t, stop())
	require.Equal(t, messages(0, 12), c.messages(), "nothing lost, nothing twice")
	require.Equal(t, uint64(1), s.Stats().Restarts)
	starts := f.starts()
	require.Len(t, starts, 2)
	require.Contains(t, starts[1], "--after-cursor="+journaldtest.Cursor(3))
}

// Output that is not in the export format is counted; journalctl is
// stopped and started again after the last good entry.
func TestRun_MalformedOutputRestartsJournalctlAfterTheLastEntry(t *testing.T) {
	f := newFixture(t)
	f.j.Append(t, 6)
	t.Setenv("FAKE_JOURNAL_GARBAGE", "3")
	s, err := New(f.config(nil), Settings{Name: "j"})
	require.NoError(t, err)
	c := &collector{}
	stop := run(t, s, c)
	waitFor(t, "6 records", func() bool { return len(c.messages()) == 6 })
	require.NoError(t, stop())
	require.Equal(t, messages(0, 6), c.messages())
	st := s.Stats()
	require.Equal(t, uint64(1), st.ParseErrors)
	require.Equal(t, uint64(1), st.Restarts)
	require.Contains(t, f.starts()[1], "--after-cursor="+journaldtest.Cursor(2))
}

func TestRun_StartAtEndReadsOnlyNewEntries(t *testing.T) {
	f := newFixture(t)
	f.j.Append(t, 5)
	s, err := New(f.config(func(c *Config) { c.StartAt = StartAtEnd }), Settings{Name: "j", Checkpoints: f.store})
	require.NoError(t, err)
	c := &collector{}
	stop := run(t, s, c)
	waitFor(t, "journalctl started", func() bool { return len(f.starts()) == 1 })
	require.Contains(t, f.starts()[0], "--lines=0")
	f.j.Append(t, 3)
	waitFor(t, "3 records", func() bool { return len(c.messages()) == 3 })
	require.NoError(t, stop())
	require.Equal(t, messages(5, 8), c.messages())
}

// A journalctl that dies before the first entry (start_at: end) is started
// again from when the first one started, not from the new end.
func TestRun_RestartBeforeAnyEntryGoesOnFromTheFirstStart(t *testing.T) {
	f := newFixture(t)
	f.j.AppendAt(t, 5, time.Now().Add(-time.Hour))
	t.Setenv("FAKE_JOURNAL_DIE", "0")
	s, err := New(f.config(func(c *Config) { c.StartAt = StartAtEnd }), Settings{Name: "j"})
	require.NoError(t, err)
	c := &collector{}
	stop := run(t, s, c)
	waitFor(t, "journalctl started", func() bool { return len(f.starts()) == 1 })
	f.j.Append(t, 3) // the first start dies in the middle of the first one
	waitFor(t, "3 records", func() bool { return len(c.messages()) == 3 })
	require.NoError(t, stop())
	require.Equal(t, messages(5, 8), c.messages())
	starts := f.starts()
	require.Len(t, starts, 2)
	require.Contains(t, starts[1], "--since=@")
}

// With start_at: beginning, a journalctl that dies before its first entry
// is started again from the beginning: nothing older is skipped.
func TestRun_RestartBeforeAnyEntryFromTheBeginningStartsOver(t *testing.T) {
	f := newFixture(t)
	f.j.AppendAt(t, 5, time.Now().Add(-time.Hour))
	t.Setenv("FAKE_JOURNAL_DIE", "0")
	s, err := New(f.config(nil), Settings{Name: "j"})
	require.NoError(t, err)
	c := &collector{}
	stop := run(t, s, c)
	waitFor(t, "5 records", func() bool { return len(c.messages()) == 5 })
	require.NoError(t, stop())
	require.Equal(t, messages(0, 5), c.messages())
	starts := f.starts()
	require.Len(t, starts, 2)
	require.NotContains(t, starts[1], "--since")
}

func TestRun_MissingJournalctlIsAnErrorAtStart(t *testing.T) {
	for _, p := range []string{filepath.Join(t.TempDir(), "journalctl"), "no-such-journalctl-here"} {
		s, err := New(func() Config { c := DefaultConfig(); c.JournalctlPath = p; return c }(), Settings{Name: "j"})
		require.NoError(t, err)
		err = s.Run(t.Context(), func(context.Context, source.Record) error { return nil })
		require.ErrorIs(t, err, ErrNoJournalctl)
		require.ErrorContains(t, err, `journald source "j"`)
		require.ErrorContains(t, err, p)
	}
}

func TestRun_JournalctlFailingAtStartIsAnErrorWithWhatItSaid(t *testing.T) {
	f := newFixture(t)
	f.j.Append(t, 3)
	t.Setenv("FAKE_JOURNAL_FAIL", "Failed to open /var/log/journal: Permission denied")
	s, err := New(f.config(nil), Settings{Name: "j"})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context(), (&collector{src: s}).emit) }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	require.ErrorContains(t, err, "failed at start (exit status 1)")
	require.ErrorContains(t, err, "Permission denied")
	require.Zero(t, s.Stats().Restarts)
}

// A saved cursor journalctl rejects is an error at start too, not a loop.
func TestRun_BadSavedCursorIsAnErrorAtStart(t *testing.T) {
	f := newFixture(t)
	f.j.Append(t, 3)
	f.store.Set("j", FileID, checkpoint.Entry{Cursor: "s=gone"})
	s, err := New(f.config(nil), Settings{Name: "j", Checkpoints: f.store})
	require.NoError(t, err)
	err = s.Run(t.Context(), (&collector{src: s}).emit)
	require.ErrorContains(t, err, "Failed to seek to cursor")
	require.ErrorContains(t, err, "--after-cursor=s=gone")
}

func TestRun_FiltersArePassedToJournalctl(t *testing.T) {
	f := newFixture(t)
	f.j.Append(t, 1)
	cfg := f.config(func(c *Config) {
		c.Units = []string{"nginx.service", "app-*.service"}
		c.Identifiers = []string{"sshd"}
		c.Priority = "debug..err"
		c.Matches = []string{"_TRANSPORT=kernel", "+", "_UID=0"}
		c.Directory = "/var/log/journal/remote"
	})
	s, err := New(cfg, Settings{Name: "j"})
	require.NoError(t, err)
	c := &collector{}
	stop := run(t, s, c)
	waitFor(t, "1 record", func() bool { return len(c.messages()) == 1 })
	require.NoError(t, stop())
	require.Equal(t, "--follow --output=export --no-pager --directory=/var/log/journal/remote --no-tail "+
		"--unit=nginx.service --unit=app-*.service --identifier=sshd --priority=debug..err _TRANSPORT=kernel + _UID=0", f.starts()[0])
}

func TestCommit_MapsSequenceNumbersToCursorsWithBoundedMemory(t *testing.T) {
	s, err := New(DefaultConfig(), Settings{Name: "j"})
	require.NoError(t, err)
	cur := func(i int64) string { return journaldtest.Cursor(int(i)) }
	s.track(1, cur(1))
	s.track(2, cur(2))
	s.track(4, cur(4)) // 3 had no cursor
	s.Commit("other", 4)
	require.Empty(t, s.Stats().Committed, "another file ID is not ours")
	s.Commit(FileID, 1)
	require.Equal(t, cur(1), s.Stats().Committed)
	s.Commit(FileID, 3)
	require.Equal(t, cur(2), s.Stats().Committed, "record 3 has no cursor: resume after 2")
	s.Commit(FileID, 2)
	require.Equal(t, cur(2), s.Stats().Committed, "backwards is ignored")
	s.Commit(FileID, 4)
	require.Equal(t, cur(4), s.Stats().Committed)

	// Far more in flight than kept: a commit never goes past its number.
	for i := int64(5); i < 5+3*maxInFlight; i++ {
		s.track(i, cur(i))
		require.LessOrEqual(t, len(s.inFlight), maxInFlight)
	}
	for _, off := range []int64{100, 20000, 3 * maxInFlight, 3*maxInFlight + 4} {
		s.Commit(FileID, off)
		_, x, _ := strings.Cut(s.Stats().Committed, ";x=")
		got, err := strconv.ParseInt(x, 10, 64)
		require.NoError(t, err)
		require.LessOrEqual(t, got, off)
		require.Less(t, off-got, int64(256), "an earlier cursor, not a far one")
	}
	require.Equal(t, cur(3*maxInFlight+4), s.Stats().Committed, "the newest is always kept")
}
