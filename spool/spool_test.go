package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestSpool_AppendNextAckRoundTrip(t *testing.T) {
	s := open(t, testConfig(t))
	ctx := t.Context()
	var ids []ID
	for i := range 100 {
		id, err := s.Append(ctx, payload(uint64(i), 10+i*37))
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.Equal(t, ID(1), ids[0])
	for i := range 100 {
		id, b, err := s.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, ids[i], id)
		require.Equal(t, payload(uint64(i), 10+i*37), b)
		require.NoError(t, s.Ack(id))
	}
	s.deleteDone() // the maintainer's job, done now
	st := s.Stats()
	require.Equal(t, int64(0), st.Entries)
	require.Equal(t, uint64(100), st.Appended)
	require.Equal(t, uint64(100), st.Acked)
	require.Equal(t, int64(1), st.Segments, "only the active segment is left: %+v", st)
}

func TestSpool_EmptyAndLargeEntries(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxEntryBytes = 3 << 20
	s := open(t, cfg)
	big := payload(7, 3<<20) // larger than a segment and than the write buffer
	for _, e := range [][]byte{{}, big, []byte("x")} {
		_, err := s.Append(t.Context(), e)
		require.NoError(t, err)
	}
	for _, want := range [][]byte{{}, big, []byte("x")} {
		_, b, err := s.Next(t.Context())
		require.NoError(t, err)
		require.NotNil(t, b)
		require.Equal(t, want, b)
	}
}

func TestAppend_TooLargeIsRefused(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxEntryBytes = 1000
	s := open(t, cfg)
	_, err := s.Append(t.Context(), make([]byte, 1001))
	require.ErrorIs(t, err, ErrTooLarge)
	_, err = s.Append(t.Context(), make([]byte, 1000))
	require.NoError(t, err)
}

func TestNext_BlocksUntilAnEntryIsAppended(t *testing.T) {
	s := open(t, testConfig(t))
	got := make(chan []byte)
	go func() {
		_, b, err := s.Next(context.Background())
		if err != nil {
			b = []byte(err.Error())
		}
		got <- b
	}()
	select {
	case b := <-got:
		t.Fatalf("Next returned %q before any Append", b)
	default:
	}
	_, err := s.Append(t.Context(), []byte("hello"))
	require.NoError(t, err)
	require.Equal(t, []byte("hello"), <-got)
}

func TestNext_ReturnsWhenContextIsDoneOrSpoolCloses(t *testing.T) {
	s := open(t, testConfig(t))
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 2)
	go func() { _, _, err := s.Next(ctx); errc <- err }()
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)

	go func() { _, _, err := s.Next(context.Background()); errc <- err }()
	require.NoError(t, s.Close())
	require.ErrorIs(t, <-errc, ErrClosed)
}

func TestClose_IsIdempotentAndLaterCallsGetErrClosed(t *testing.T) {
	s := open(t, testConfig(t))
	id, err := s.Append(t.Context(), []byte("a"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = s.Append(t.Context(), []byte("b"))
	require.ErrorIs(t, err, ErrClosed)
	_, _, err = s.Next(t.Context())
	require.ErrorIs(t, err, ErrClosed)
	_, _, _, err = s.TryNext(nil)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, s.Ack(id), ErrClosed)
	require.ErrorIs(t, s.Sync(), ErrClosed)
	require.Equal(t, id, s.Durable())
	_ = s.Stats()
}

func TestReopen_AckedAreNotReadAgainAndUnackedAre(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	const n = 300 // several segments
	for i := range n {
		_, err := s.Append(t.Context(), payload(uint64(i), 200))
		require.NoError(t, err)
	}
	ids, _ := drain(t, s)
	require.Len(t, ids, n)
	acked := map[ID]bool{}
	for i, id := range ids {
		if i%3 != 0 || i < 100 { // the first 100 all, then two out of three
			require.NoError(t, s.Ack(id))
			acked[id] = true
		}
	}
	require.NoError(t, s.Close())

	s = open(t, cfg)
	require.Equal(t, int64(n-len(acked)), s.Stats().Entries)
	got, data := drain(t, s)
	var want []ID
	for _, id := range ids {
		if !acked[id] {
			want = append(want, id)
		}
	}
	require.Equal(t, want, got)
	for i, b := range data {
		seq, err := checkPayload(b)
		require.NoError(t, err)
		require.Equal(t, uint64(got[i]-1), seq)
	}
	// New IDs continue after the old ones.
	id, err := s.Append(t.Context(), []byte("new"))
	require.NoError(t, err)
	require.Equal(t, ID(n+1), id)
}

func TestAck_OutOfOrderDeletesEachSegmentOnceAllOfItIsAcked(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	s := open(t, cfg)
	for i := range 100 {
		_, err := s.Append(t.Context(), payload(uint64(i), 500))
		require.NoError(t, err)
	}
	ids, _ := drain(t, s)
	segsBefore := s.Stats().Segments
	require.Greater(t, segsBefore, int64(10))
	// Ack backwards: no segment can go until its first entry is acked.
	for i := len(ids) - 1; i >= 0; i-- {
		require.NoError(t, s.Ack(ids[i]))
		require.NoError(t, s.Ack(ids[i]), "acking twice is fine")
	}
	s.deleteDone()
	st := s.Stats()
	require.Equal(t, int64(1), st.Segments, "only the active segment is left")
	require.Equal(t, int64(0), st.Entries)
	files, err := filepath.Glob(filepath.Join(cfg.Dir, "*.seg"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	require.Equal(t, st.Bytes, dirBytes(t, cfg.Dir))
}

// dirBytes sums the sizes of the spool's own files.
func dirBytes(t testing.TB, dir string) int64 {
	var n int64
	for _, pat := range []string{"*.seg", "*.ack"} {
		files, err := filepath.Glob(filepath.Join(dir, pat))
		require.NoError(t, err)
		for _, f := range files {
			fi, err := os.Stat(f)
			require.NoError(t, err)
			n += fi.Size()
		}
	}
	return n
}

func TestAck_UnknownIDIsAnError(t *testing.T) {
	s := open(t, testConfig(t))
	require.ErrorIs(t, s.Ack(0), ErrUnknownID)
	require.ErrorIs(t, s.Ack(1), ErrUnknownID)
	id, err := s.Append(t.Context(), []byte("a"))
	require.NoError(t, err)
	require.NoError(t, s.Ack(id))
}

func TestAck_BeforeReadSkipsTheEntry(t *testing.T) {
	s := open(t, testConfig(t))
	for i := range 3 {
		_, err := s.Append(t.Context(), payload(uint64(i), 20))
		require.NoError(t, err)
	}
	require.NoError(t, s.Ack(2))
	ids, _ := drain(t, s)
	require.Equal(t, []ID{1, 3}, ids)
}

func TestIDs_KeepGrowingAcrossRestartsEvenWhenEverythingWasAcked(t *testing.T) {
	cfg := testConfig(t)
	var last ID
	for round := range 4 {
		s := open(t, cfg)
		for i := range 50 * (round + 1) {
			id, err := s.Append(t.Context(), payload(uint64(i), 300))
			require.NoError(t, err)
			require.Greater(t, id, last)
			last = id
		}
		ids, _ := drain(t, s)
		for _, id := range ids {
			require.NoError(t, s.Ack(id))
		}
		require.NoError(t, s.Close())
	}
	// And an empty spool that was opened and closed without appends.
	s := open(t, cfg)
	require.NoError(t, s.Close())
	s = open(t, cfg)
	id, err := s.Append(t.Context(), []byte("x"))
	require.NoError(t, err)
	require.Equal(t, last+1, id)
	require.Equal(t, int64(1), s.Stats().Segments)
}

func TestSync_IntervalMakesEntriesDurableWithinTheInterval(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = SyncInterval
	cfg.SyncInterval = 20 * time.Millisecond
	s := open(t, cfg)
	var id ID
	for i := range 10 {
		var err error
		id, err = s.Append(t.Context(), payload(uint64(i), 100))
		require.NoError(t, err)
	}
	require.NoError(t, s.WaitDurable(t.Context(), id))
	require.GreaterOrEqual(t, s.Durable(), id)
	require.Positive(t, s.Stats().Fsyncs)
}

func TestSync_AlwaysIsDurableWhenAppendReturns(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = SyncAlways
	s := open(t, cfg)
	for i := range 20 {
		id, err := s.Append(t.Context(), payload(uint64(i), 100))
		require.NoError(t, err)
		require.GreaterOrEqual(t, s.Durable(), id)
	}
}

func TestSync_AlwaysGroupCommitSharesOneFsyncAmongWaitingAppenders(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = SyncAlways
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	before := s.Stats().Fsyncs
	gate := make(chan struct{})
	fs.set(func(f *faultFS) { f.syncGate = gate })
	const appenders = 8
	errc := make(chan error, appenders)
	for i := range appenders {
		go func() {
			_, err := s.Append(context.Background(), payload(uint64(i), 100))
			errc <- err
		}()
	}
	// Every appender has written its frame while the first fsync is held.
	for s.Stats().Appended < appenders {
		ch := s.dataEv.wait()
		if s.Stats().Appended < appenders {
			<-ch
		}
	}
	close(gate)
	for range appenders {
		require.NoError(t, <-errc)
	}
	fsyncs := s.Stats().Fsyncs - before
	require.LessOrEqual(t, fsyncs, uint64(2), "8 appends shared at most 2 fsyncs")
	t.Logf("%d appends, %d fsyncs", appenders, fsyncs)
}

func TestSync_NeverReportsTheLastAppendedAsDurable(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = SyncNever
	s := open(t, cfg)
	id, err := s.Append(t.Context(), []byte("a"))
	require.NoError(t, err)
	require.Equal(t, id, s.Durable())
	require.NoError(t, s.WaitDurable(t.Context(), id))
}

func TestWaitDurable_ReturnsOnContextAndOnSync(t *testing.T) {
	s := open(t, testConfig(t)) // interval of an hour
	id, err := s.Append(t.Context(), []byte("a"))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, s.WaitDurable(ctx, id), context.Canceled)
	done := make(chan error)
	go func() { done <- s.WaitDurable(context.Background(), id) }()
	require.NoError(t, s.Sync())
	require.NoError(t, <-done)
}

func TestFiles_Are0600AndTheDirectory0700(t *testing.T) {
	cfg := testConfig(t)
	cfg.Dir = filepath.Join(t.TempDir(), "a", "spool")
	s := open(t, cfg)
	id, err := s.Append(t.Context(), []byte("a"))
	require.NoError(t, err)
	require.NoError(t, s.Ack(id))
	require.NoError(t, s.Sync())
	fi, err := os.Stat(cfg.Dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	ents, err := os.ReadDir(cfg.Dir)
	require.NoError(t, err)
	require.Len(t, ents, 3) // LOCK, a segment, its ack file
	for _, e := range ents {
		fi, err := e.Info()
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), e.Name())
	}
}

func TestOpen_SecondOpenOfTheSameDirectoryGetsErrLocked(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	_, err := Open(cfg, Settings{})
	require.ErrorIs(t, err, ErrLocked)
	require.Contains(t, err.Error(), cfg.Dir)
	require.NoError(t, s.Close())
	s2, err := Open(cfg, Settings{})
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

func TestOpen_FailsOnInvalidConfigAndOnAnUnusableDirectory(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = "sometimes"
	_, err := Open(cfg, Settings{})
	require.ErrorContains(t, err, "sync:")

	if os.Geteuid() == 0 {
		t.Log("running as root: permission checks do not apply")
		return
	}
	cfg = testConfig(t)
	require.NoError(t, os.Chmod(cfg.Dir, 0o500))
	t.Cleanup(func() { _ = os.Chmod(cfg.Dir, 0o700) })
	_, err = Open(cfg, Settings{})
	require.Error(t, err)
}

func TestSpool_ConcurrentAppendersAndReaders(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = SyncAlways
	s := open(t, cfg)
	const appenders, each = 4, 150
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Go(func() {
			for i := range each {
				_, err := s.Append(context.Background(), payload(uint64(a*each+i), 64+i))
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var mu sync.Mutex
	seen := map[uint64]ID{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var rg sync.WaitGroup
	for range 3 {
		rg.Go(func() {
			var buf []byte
			for {
				id, b, err := s.ReadNext(ctx, buf)
				if err != nil {
					return
				}
				seq, err := checkPayload(b)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				if _, dup := seen[seq]; dup {
					t.Errorf("seq %d handed out twice", seq)
				}
				seen[seq] = id
				n := len(seen)
				mu.Unlock()
				if err := s.Ack(id); err != nil {
					t.Error(err)
				}
				buf = b
				if n == appenders*each {
					cancel()
				}
			}
		})
	}
	wg.Wait()
	rg.Wait()
	require.Len(t, seen, appenders*each)
	require.Equal(t, int64(0), s.Stats().Entries)
}

func TestReadNext_DoesNotAllocateInSteadyState(t *testing.T) {
	s := open(t, testConfig(t))
	e := payload(1, 1000)
	for range 200 {
		_, err := s.Append(t.Context(), e)
		require.NoError(t, err)
	}
	buf := make([]byte, 0, 4096)
	ctx := t.Context()
	allocs := testing.AllocsPerRun(100, func() {
		id, b, err := s.ReadNext(ctx, buf)
		if err != nil || len(b) != len(e) {
			t.Fatal(err)
		}
		_ = s.Ack(id)
	})
	require.Zero(t, allocs)
}

func TestConfig_ValidateReportsEveryProblemWithItsKey(t *testing.T) {
	ok := DefaultConfig()
	ok.Dir = "/x"
	require.NoError(t, ok.Validate())

	bad := Config{SegmentBytes: 1, MaxBytes: 1, Sync: "x", WhenFull: "y", MaxEntryBytes: 0, MinFreeBytes: -2}
	err := bad.Validate()
	require.Error(t, err)
	for _, key := range []string{"dir:", "segment_bytes:", "max_bytes:", "max_entry_bytes:", "sync:", "sync_interval:", "when_full:", "min_free_bytes:"} {
		require.Contains(t, err.Error(), key)
	}
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 8)

	c := ok
	c.MaxBytes = c.SegmentBytes*2 - 1
	require.ErrorContains(t, c.Validate(), "max_bytes: must be at least twice segment_bytes")
}

func TestErrors_AreWrappedSentinels(t *testing.T) {
	for _, err := range []error{ErrClosed, ErrFull, ErrTooLarge, ErrLocked, ErrUnknownID} {
		require.True(t, strings.HasPrefix(err.Error(), "spool: "), err)
		require.False(t, errors.Is(err, ErrClosed) && err != ErrClosed)
	}
}

func TestConfig_DecodesFromYAML(t *testing.T) {
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(`
dir: /var/lib/agent/spool/main
max_bytes: 10GiB
segment_bytes: 32MiB
max_entry_bytes: 8MiB
sync: always
sync_interval: 250ms
when_full: drop_oldest
min_free_bytes: 1GiB
`))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&cfg))
	require.NoError(t, cfg.Validate())
	require.Equal(t, Config{
		Dir: "/var/lib/agent/spool/main", MaxBytes: 10 << 30, SegmentBytes: 32 << 20, MaxEntryBytes: 8 << 20,
		Sync: SyncAlways, SyncInterval: 250 * time.Millisecond, WhenFull: WhenFullDropOldest, MinFreeBytes: 1 << 30,
	}, cfg)
}
