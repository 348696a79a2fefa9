package spool

import (
	"context"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitFor polls cond until it holds; the deadline is generous (a loaded
// machine), not a pause.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A directory made read-only while the spool runs: the appends that need a
// new segment wait and retry (one ERROR per interval, counted) instead of
// failing, and go on once it is writable again. Nothing is lost or invented.
func TestRefused_ReadOnlyDirectoryPausesAppendsAndLosesNothing(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EROFS, syscall.EPERM} {
		t.Run(errno.Error(), func(t *testing.T) {
			cfg := testConfig(t)
			fs := &faultFS{fs: osFS{}}
			log, rec := newLog(t)
			s := open(t, cfg, Settings{fs: fs, Logger: log})
			ids := fill(t, s, 5, 1000)

			fs.set(func(f *faultFS) { f.dirFault = errno })
			done := make(chan error, 1)
			var got []ID
			go func() { // 40 entries of 1000 bytes need two more segments
				for i := 5; i < 45; i++ {
					id, err := s.Append(t.Context(), payload(uint64(i), 1000))
					if err != nil {
						done <- err
						return
					}
					got = append(got, id)
				}
				done <- nil
			}()
			waitBlocked(t, s, 1)
			waitFor(t, "three refused attempts", func() bool { return s.Stats().WriteErrors >= 3 })
			require.Equal(t, 1, rec.count(slog.LevelError, "refuses writes"), "one ERROR per interval, not per attempt")
			select {
			case err := <-done:
				t.Fatalf("the appender returned while the directory refuses writes: %v", err)
			default:
			}

			fs.set(func(f *faultFS) { f.dirFault = nil })
			require.NoError(t, <-done)
			require.Equal(t, 1, rec.count(slog.LevelInfo, "accepts writes again"))
			require.NoError(t, s.Close())

			_, _, all := readAll(t, cfg)
			require.Equal(t, append(ids, got...), all)
			require.Equal(t, idRangeList(1, 45), all)
		})
	}
}

// The ERROR is repeated once per interval while the refusal lasts, with the
// number of failures since the last one.
func TestRefused_ErrorIsLoggedOncePerInterval(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	log, rec := newLog(t)
	s := open(t, cfg, Settings{fs: fs, Logger: log, errLogEvery: 300 * time.Millisecond})
	fs.set(func(f *faultFS) { f.dirFault = syscall.EACCES })
	done := make(chan error, 1)
	go func() {
		for i := range 40 {
			if _, err := s.Append(t.Context(), payload(uint64(i), 1000)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	waitFor(t, "a second ERROR", func() bool { return rec.count(slog.LevelError, "refuses writes") >= 2 })
	errs := s.Stats().WriteErrors
	require.Less(t, uint64(rec.count(slog.LevelError, "refuses writes")), errs, "fewer lines than attempts")
	fs.set(func(f *faultFS) { f.dirFault = nil })
	require.NoError(t, <-done)
}

// With a drop policy the appender cannot wait: a refused write is reported
// as ErrFull (and counted), never as an error that stops the flow.
func TestRefused_DropPoliciesReportErrFull(t *testing.T) {
	for _, wf := range []WhenFull{WhenFullDropNewest, WhenFullDropOldest} {
		t.Run(string(wf), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.WhenFull = wf
			fs := &faultFS{fs: osFS{}}
			s := open(t, cfg, Settings{fs: fs})
			ids := fill(t, s, 30, 1000) // two segments: drop_oldest has one to drop
			fs.set(func(f *faultFS) { f.dirFault = syscall.EROFS })
			var err error
			for i := 30; i < 60 && err == nil; i++ {
				_, err = s.Append(t.Context(), payload(uint64(i), 1000))
			}
			require.ErrorIs(t, err, ErrFull)
			require.Contains(t, err.Error(), "refuses writes")
			require.Positive(t, s.Stats().DroppedNewest)
			require.Zero(t, s.Stats().DroppedOldest, "dropping frees nothing in a read-only directory")
			fs.set(func(f *faultFS) { f.dirFault = nil })
			waitFor(t, "the backoff to pass", func() bool {
				s.wmu.Lock()
				defer s.wmu.Unlock()
				return !s.refusingLocked()
			})
			id, err := s.Append(t.Context(), payload(99, 10))
			require.NoError(t, err)
			require.Greater(t, id, ids[len(ids)-1])
		})
	}
}

// Ack-file writes in a read-only directory are retried every interval, logged
// once and counted; once the directory is writable the acks reach the disk.
func TestRefused_AckWritesRetryAndLogOnce(t *testing.T) {
	cfg := testConfig(t)
	cfg.SyncInterval = 5 * time.Millisecond
	fs := &faultFS{fs: osFS{}}
	log, rec := newLog(t)
	s := open(t, cfg, Settings{fs: fs, Logger: log})
	ids := fill(t, s, 10, 100)
	drain(t, s)
	fs.set(func(f *faultFS) { f.dirFault = syscall.EACCES })
	for _, id := range ids[:5] {
		require.NoError(t, s.Ack(id))
	}
	waitFor(t, "three failed ack writes", func() bool { return s.Stats().WriteErrors >= 3 })
	require.Equal(t, 1, rec.count(slog.LevelError, "writing acknowledgements failed"))
	fs.set(func(f *faultFS) { f.dirFault = nil })
	waitFor(t, "the acks to be written", func() bool { return rec.count(slog.LevelInfo, "acknowledgements written again") == 1 })
	s.crash()

	_, _, got := readAll(t, cfg)
	require.Equal(t, ids[5:], got)
}

// Regression: a finished segment whose file could not be deleted (the
// directory was read-only) was forgotten, so its space never came back and
// an append blocked on max_bytes waited until a restart. It is now tried
// again until it goes.
func TestRefused_FailedDeletionIsRetriedAndFreesRoom(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 8 << 10
	cfg.SyncInterval = 10 * time.Millisecond
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 6, 900) // two segments
	got, _ := drain(t, s)
	require.Equal(t, ids, got)

	fs.set(func(f *faultFS) { f.dirFault = syscall.EACCES })
	for _, id := range ids {
		require.NoError(t, s.Ack(id))
	}
	waitFor(t, "a failed deletion", func() bool { return s.Stats().WriteErrors >= 1 })
	fs.set(func(f *faultFS) { f.dirFault = nil })

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 6 {
		_, err := s.Append(ctx, payload(uint64(6+i), 900))
		require.NoError(t, err, "append %d", i)
	}
	require.LessOrEqual(t, s.Stats().Bytes, int64(cfg.MaxBytes))
}

// The same through the real file system: chmod a-w on the directory. Root
// ignores permission bits, so this runs only as another user; the tests
// above cover the same through the file-system seam.
func TestRefused_ChmodReadOnlyDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores permission bits; covered through the fs seam by TestRefused_ReadOnlyDirectoryPausesAppendsAndLosesNothing")
	}
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 5, 1000)
	require.NoError(t, os.Chmod(cfg.Dir, 0o500))
	t.Cleanup(func() { _ = os.Chmod(cfg.Dir, 0o700) })
	done := make(chan error, 1)
	var got []ID
	go func() {
		for i := 5; i < 45; i++ {
			id, err := s.Append(t.Context(), payload(uint64(i), 1000))
			if err != nil {
				done <- err
				return
			}
			got = append(got, id)
		}
		done <- nil
	}()
	waitBlocked(t, s, 1)
	require.Positive(t, s.Stats().WriteErrors)
	require.NoError(t, os.Chmod(cfg.Dir, 0o700))
	require.NoError(t, <-done)
	require.NoError(t, s.Close())
	_, _, all := readAll(t, cfg)
	require.Equal(t, append(ids, got...), all)
}
