package spool

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const roomAgain = "room again, appends resume"

// The end of a full episode is logged within a maintainer round of room
// coming back, even when no append comes to notice it: the agent's direct
// path takes all the traffic once the destination keeps up again, and its
// Append to a full spool (when_full: block) gave up after a bounded wait.
// The log used to say "full" with no end, for as long as no append came.
func TestRoomAgain_LoggedWithoutAnAppend_FreeDiskFloor(t *testing.T) {
	for _, wb := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "write_behind"}[wb], func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MinFreeBytes = 100 << 20
			cfg.SyncInterval = 20 * time.Millisecond // maintainer rounds
			fs := &faultFS{fs: osFS{}}
			fs.set(func(f *faultFS) { f.free = 10 << 20 })
			log, rec := newLog(t)
			set := Settings{fs: fs, Logger: log}
			var s *Spool
			if wb {
				s = openWB(t, cfg, set)
			} else {
				s = open(t, cfg, set)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			_, err := s.Append(ctx, payload(1, 100))
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Equal(t, 1, rec.count(slog.LevelWarn, "full, appends wait for room"))
			require.True(t, s.Stats().Full)

			fs.set(func(f *faultFS) { f.free = 1 << 40 })
			waitFor(t, "the end of the episode is logged", func() bool { return rec.count(slog.LevelInfo, roomAgain) == 1 })
			require.False(t, s.Stats().Full)
			id, err := s.Append(t.Context(), payload(1, 100))
			require.NoError(t, err)
			require.Equal(t, ID(1), id)
			require.Equal(t, 1, rec.count(slog.LevelInfo, roomAgain), "logged once")
		})
	}
}

// After ENOSPC with when_full: drop_newest and no append after it, the end
// is logged once the disk shows room again, and not before: the free-space
// check lifts the ENOSPC stop every round, which alone proves nothing.
func TestRoomAgain_LoggedWithoutAnAppend_ENOSPC(t *testing.T) {
	cfg := testConfig(t)
	cfg.WhenFull = WhenFullDropNewest
	cfg.SyncInterval = 20 * time.Millisecond
	fs := &faultFS{fs: osFS{}}
	log, rec := newLog(t)
	s := open(t, cfg, Settings{fs: fs, Logger: log})
	ids := fill(t, s, 3, 100)
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC; f.free = 64 << 10 })
	_, err := s.Append(t.Context(), payload(3, 100))
	require.ErrorIs(t, err, ErrFull)
	require.Equal(t, 1, rec.count(slog.LevelWarn, "disk full (ENOSPC)"))

	fs.set(func(f *faultFS) { f.writeErr = nil })
	// Rounds that lift the ENOSPC stop while statfs shows (almost) no room.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		require.Zero(t, rec.count(slog.LevelInfo, roomAgain), "room again without any room")
		time.Sleep(10 * time.Millisecond)
	}
	require.True(t, s.Stats().Full)
	fs.set(func(f *faultFS) { f.free = 1 << 40 })
	waitFor(t, "the end of the episode is logged", func() bool { return rec.count(slog.LevelInfo, roomAgain) == 1 })
	require.False(t, s.Stats().Full)
	id, err := s.Append(t.Context(), payload(3, 100))
	require.NoError(t, err)
	require.Equal(t, ids[2]+1, id)
}

// A segment deleted since the ENOSPC (the senders delivered a backlog) is
// room made by the spool itself: the end is logged without a statfs that
// shows room (min_free_bytes: 0 measures none).
func TestRoomAgain_ENOSPCEndedByADeletion(t *testing.T) {
	cfg := testConfig(t)
	cfg.WhenFull = WhenFullDropNewest
	cfg.SyncInterval = 20 * time.Millisecond
	fs := &faultFS{fs: osFS{}}
	log, rec := newLog(t)
	s := open(t, cfg, Settings{fs: fs, Logger: log})
	ids := fill(t, s, 12, 3000) // two sealed segments and an active one
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC; f.free = 64 << 10 })
	_, err := s.Append(t.Context(), payload(12, 3000))
	require.ErrorIs(t, err, ErrFull)
	fs.set(func(f *faultFS) { f.writeErr = nil })
	got, _ := drain(t, s)
	require.Equal(t, ids, got)
	for _, id := range ids[:5] {
		require.NoError(t, s.Ack(id))
	}
	waitFor(t, "the end of the episode is logged", func() bool { return rec.count(slog.LevelInfo, roomAgain) == 1 })
	require.False(t, s.Stats().Full)
}

// The write-behind's writer retrying a write that fails with ENOSPC logs
// the episode once, not at every retry (the free-space check lifted the
// stop every second, and the next failure logged it again), and its end
// once a write succeeds, with no append to notice it.
func TestRoomAgain_WriteBehindENOSPCLoggedOncePerEpisode(t *testing.T) {
	cfg := testConfig(t)
	cfg.WhenFull = WhenFullDropNewest
	cfg.SyncInterval = 20 * time.Millisecond
	fs := &faultFS{fs: osFS{}}
	log, rec := newLog(t)
	s := openWB(t, cfg, Settings{fs: fs, Logger: log})
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	_, err := s.Append(t.Context(), payload(0, 100))
	require.NoError(t, err)
	w := fs.writes.Load()
	waitFor(t, "three attempts of the writer", func() bool { return fs.writes.Load() >= w+3 })
	require.Equal(t, 1, rec.count(slog.LevelWarn, "disk full (ENOSPC)"), "once per episode")
	require.Zero(t, rec.count(slog.LevelInfo, roomAgain))
	require.True(t, s.Stats().Full)

	fs.set(func(f *faultFS) { f.writeErr = nil })
	waitFor(t, "the end of the episode is logged", func() bool { return rec.count(slog.LevelInfo, roomAgain) == 1 })
	require.Zero(t, s.Stats().Staged)
	require.False(t, s.Stats().Full)
	require.Equal(t, 1, rec.count(slog.LevelWarn, "disk full (ENOSPC)"))
}

const dropsStopped = "room again, drops stopped"

// attr is the value of key in the one record whose message contains msg.
func (h *logRecorder) attr(t *testing.T, msg, key string) string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var vals []string
	for _, r := range h.recs {
		if strings.Contains(r.Message, msg) {
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == key {
					vals = append(vals, a.Value.String())
				}
				return true
			})
		}
	}
	require.Len(t, vals, 1, "one %q with %s", msg, key)
	return vals[0]
}

// noLineFor checks, for d, that nothing containing msg is logged.
func noLineFor(t *testing.T, rec *logRecorder, d time.Duration, msg string) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		require.Zero(t, rec.count(slog.LevelInfo, msg), "logged before it was true")
	}
}

// With a drop policy, a full spool logs its drops ("full, dropping
// entries", at most once per interval) but never said when they stopped:
// the log showed a spool losing data long after it had room again. The end
// of the drop episode is now logged once, with no append needed, once no
// entry was dropped for the interval and an entry would be accepted, with
// the entries dropped in it.
func TestDropsStopped_LoggedOnceWithTheEntriesDropped(t *testing.T) {
	small := func(t *testing.T, wf WhenFull) Config {
		cfg := testConfig(t)
		cfg.SegmentBytes = 4 << 10
		cfg.MaxBytes = 8 << 10
		cfg.SyncInterval = 20 * time.Millisecond
		cfg.WhenFull = wf
		return cfg
	}
	const every = 150 * time.Millisecond
	t.Run("drop_newest at max_bytes", func(t *testing.T) {
		log, rec := newLog(t)
		s := open(t, small(t, WhenFullDropNewest), Settings{Logger: log, lossLogEvery: every})
		var err error
		for i := 0; err == nil; i++ {
			_, err = s.Append(t.Context(), payload(uint64(i), 500))
		}
		require.ErrorIs(t, err, ErrFull)
		for i := range 5 {
			_, err = s.Append(t.Context(), payload(uint64(100+i), 500))
			require.ErrorIs(t, err, ErrFull)
		}
		require.Equal(t, uint64(6), s.Stats().DroppedNewest)
		require.Equal(t, 1, rec.count(slog.LevelError, "full, dropping entries"))
		noLineFor(t, rec, 3*every, dropsStopped) // still full: nothing acked

		ids, _ := drain(t, s)
		for _, id := range ids {
			require.NoError(t, s.Ack(id))
		}
		waitFor(t, "the end of the drops is logged", func() bool { return rec.count(slog.LevelInfo, dropsStopped) == 1 })
		require.Equal(t, "6", rec.attr(t, dropsStopped, "dropped_newest"))
		require.Equal(t, "0", rec.attr(t, dropsStopped, "dropped_oldest"))
		_, err = s.Append(t.Context(), payload(200, 500))
		require.NoError(t, err)
		time.Sleep(2 * every) // rounds that would log it again
		require.Equal(t, 1, rec.count(slog.LevelInfo, dropsStopped), "logged once")
	})
	t.Run("drop_oldest at max_bytes", func(t *testing.T) {
		log, rec := newLog(t)
		s := open(t, small(t, WhenFullDropOldest), Settings{Logger: log, lossLogEvery: every})
		for i := range 60 {
			_, err := s.Append(t.Context(), payload(uint64(i), 500))
			require.NoError(t, err)
		}
		dropped := s.Stats().DroppedOldest
		require.Positive(t, dropped)
		waitFor(t, "the end of the drops is logged", func() bool { return rec.count(slog.LevelInfo, dropsStopped) == 1 })
		require.Equal(t, strconv.FormatUint(dropped, 10), rec.attr(t, dropsStopped, "dropped_oldest"))
		require.Equal(t, "0", rec.attr(t, dropsStopped, "dropped_newest"))
	})
	t.Run("drop_newest under the free-disk floor", func(t *testing.T) {
		cfg := small(t, WhenFullDropNewest)
		cfg.MinFreeBytes = 100 << 20
		fs := &faultFS{fs: osFS{}}
		fs.set(func(f *faultFS) { f.free = 10 << 20 })
		log, rec := newLog(t)
		s := open(t, cfg, Settings{fs: fs, Logger: log, lossLogEvery: every})
		_, err := s.Append(t.Context(), payload(0, 500))
		require.ErrorIs(t, err, ErrFull)
		require.Equal(t, 1, rec.count(slog.LevelError, "full, dropping entries"))
		noLineFor(t, rec, 3*every, dropsStopped) // the disk is still below the floor

		fs.set(func(f *faultFS) { f.free = 1 << 40 })
		waitFor(t, "the end of the drops is logged", func() bool { return rec.count(slog.LevelInfo, dropsStopped) == 1 })
		require.Equal(t, "1", rec.attr(t, dropsStopped, "dropped_newest"))
	})
}

// A drop policy that keeps dropping (a segment every round of appends)
// stays in one episode: its end is not logged between two drops closer
// than the interval.
func TestDropsStopped_NotLoggedWhileDropsGoOn(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 8 << 10
	cfg.SyncInterval = 20 * time.Millisecond
	cfg.WhenFull = WhenFullDropOldest
	log, rec := newLog(t)
	s := open(t, cfg, Settings{Logger: log, lossLogEvery: 2 * time.Second})
	before := s.Stats().DroppedOldest
	for i := 0; s.Stats().DroppedOldest < before+5; i++ {
		_, err := s.Append(t.Context(), payload(uint64(i), 500))
		require.NoError(t, err)
		time.Sleep(5 * time.Millisecond) // several maintainer rounds between drops
	}
	require.Zero(t, rec.count(slog.LevelInfo, dropsStopped))
}

// A directory that refuses writes ended its refusal only with a successful
// write: with no append after it, "accepts writes again" was never logged.
// The maintainer now probes it at the backoff's pace (each failed probe is
// counted as a write error) and logs the end once it takes writes.
func TestRefused_EndLoggedWithoutAnAppend(t *testing.T) {
	// (The write-behind's writer retries a refused write itself and ends
	// the refusal when one succeeds: TestWriteBehind tests.)
	for _, tc := range []struct {
		name string
		wf   WhenFull
	}{
		{"drop_newest", WhenFullDropNewest},
		{"block, the appender gave up", WhenFullBlock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.WhenFull = tc.wf
			cfg.SyncInterval = 20 * time.Millisecond
			fs := &faultFS{fs: osFS{}}
			log, rec := newLog(t)
			set := Settings{fs: fs, Logger: log, lossLogEvery: 100 * time.Millisecond}
			s := open(t, cfg, set)
			ids := fill(t, s, 15, 1000) // the active segment is nearly full
			fs.set(func(f *faultFS) { f.dirFault = syscall.EROFS })
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			var err error
			for i := 15; i < 30 && err == nil; i++ { // until one needs a new segment
				_, err = s.Append(ctx, payload(uint64(i), 1000))
			}
			cancel()
			require.Error(t, err)
			require.Equal(t, 1, rec.count(slog.LevelError, "refuses writes"))
			// Probed while refused: each probe fails, and is counted.
			errs := s.Stats().WriteErrors
			waitFor(t, "two probes", func() bool { return s.Stats().WriteErrors >= errs+2 })
			require.Zero(t, rec.count(slog.LevelInfo, "accepts writes again"))

			fs.set(func(f *faultFS) { f.dirFault = nil })
			waitFor(t, "the end of the refusal is logged", func() bool { return rec.count(slog.LevelInfo, "accepts writes again") == 1 })
			if tc.wf != WhenFullBlock {
				waitFor(t, "the end of the drops is logged", func() bool { return rec.count(slog.LevelInfo, dropsStopped) == 1 })
			}
			_, err = os.Stat(filepath.Join(cfg.Dir, probeName))
			require.ErrorIs(t, err, os.ErrNotExist, "the probe leaves no file")
			id, err := s.Append(t.Context(), payload(99, 1000))
			require.NoError(t, err)
			require.Greater(t, id, ids[len(ids)-1])
			require.Equal(t, 1, rec.count(slog.LevelInfo, "accepts writes again"))
		})
	}
}
