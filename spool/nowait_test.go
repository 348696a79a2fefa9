package spool

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An append that meets a full spool with when_full: drop_newest or
// drop_oldest decides without waiting for a write(2) in progress: the
// writer holds fmu across its writes, and on a full, slow disk a write
// took half a second and more, which every refused or dropping appender
// (a source) waited out before it could refuse. fmu is needed only when a
// roll would free the active segment (all of it acknowledged), or start
// one where there is none.
func TestWhenFull_DropDecisionDoesNotWaitForTheDisk(t *testing.T) {
	for _, policy := range []WhenFull{WhenFullDropNewest, WhenFullDropOldest} {
		t.Run(string(policy), func(t *testing.T) {
			cfg := testConfig(t) // 16 KiB segments
			cfg.MaxBytes = 4 * cfg.SegmentBytes
			cfg.WhenFull = policy
			fs := &faultFS{fs: osFS{}}
			s := openWB(t, cfg, Settings{fs: fs})
			fill(t, s, 16, 3000) // three segments and some
			require.NoError(t, s.Sync())

			gate := make(chan struct{})
			released := false
			release := func() {
				if !released {
					released = true
					close(gate)
				}
			}
			defer release()
			fs.set(func(f *faultFS) { f.writeGate = gate })
			w := fs.writes.Load()
			_, err := s.Append(t.Context(), payload(16, 3000))
			require.NoError(t, err)
			waitFor(t, "the writer is in a write", func() bool { return fs.writes.Load() > w })

			done := make(chan error, 1)
			go func() {
				var err error
				for i := range 8 { // past max_bytes
					if _, err = s.Append(context.Background(), payload(uint64(17+i), 3000)); err != nil {
						break
					}
				}
				done <- err
			}()
			var got error
			select {
			case got = <-done:
			case <-time.After(10 * time.Second):
				release()
				<-done
				t.Fatalf("when_full: %s waited for the write in progress", policy)
			}
			st := s.Stats()
			if policy == WhenFullDropNewest {
				require.ErrorIs(t, got, ErrFull)
				require.Positive(t, st.DroppedNewest)
			} else {
				require.NoError(t, got)
				require.Positive(t, st.DroppedOldest)
				require.Zero(t, st.DroppedNewest)
			}
			release()
			require.NoError(t, s.Sync())
		})
	}
}

