package spool

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A small spool in front of a destination slower than the source fills
// again and again: each episode logged a WARN and an INFO, and agent tail
// (whose log shows WARN) printed a dozen "spool: full" lines a second while
// it drained a backlog. The first episode is logged; later ones within a
// minute are counted into the next line, and "room again" follows only a
// logged "full".
func TestSpool_RepeatedFullEpisodesAreLoggedOnceAMinute(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 8 << 10
	cfg.WhenFull = WhenFullBlock
	log, rec := newLog(t)
	s := open(t, cfg, Settings{Logger: log})
	done := make(chan error, 1)
	go func() {
		for i := range 60 {
			if _, err := s.Append(t.Context(), payload(uint64(i), 500)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// The reader frees room only once the writer is blocked: every pass
	// is a full episode.
	episodes := 0
	for finished := false; !finished; {
		select {
		case err := <-done:
			require.NoError(t, err)
			finished = true
			continue
		default:
		}
		if s.Stats().BlockedAppends == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		episodes++
		for s.Stats().BlockedAppends > 0 {
			id, _, ok, err := s.TryNext(nil)
			require.NoError(t, err)
			if !ok {
				time.Sleep(time.Millisecond)
				continue
			}
			require.NoError(t, s.Ack(id))
		}
	}
	require.GreaterOrEqual(t, episodes, 3)
	require.Equal(t, 1, rec.count(slog.LevelWarn, "spool: full, appends wait for room"))
	require.Equal(t, 1, rec.count(slog.LevelInfo, "spool: room again"))
}
