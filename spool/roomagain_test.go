package spool

import (
	"context"
	"log/slog"
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
