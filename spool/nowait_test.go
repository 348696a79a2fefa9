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

// when_full: drop_oldest under the free-disk floor drops what makes room
// for the entry, not the whole backlog: the bytes of a deleted segment
// count as free at once. They counted only at the next free-space check
// (up to a second later), so one append dropped one segment after another,
// every one of them, and was then refused anyway.
func TestWhenFull_DropOldestUnderTheFloorDropsOneSegment(t *testing.T) {
	cfg := testConfig(t) // 16 KiB segments: 5 entries of 3000 bytes each
	cfg.MinFreeBytes = 100 << 20
	cfg.WhenFull = WhenFullDropOldest
	fs := &faultFS{fs: osFS{}}
	fs.set(func(f *faultFS) { f.free = 1 << 40 })
	s := open(t, cfg, Settings{fs: fs})
	fill(t, s, 30, 3000)
	segs := s.Stats().Segments
	require.GreaterOrEqual(t, segs, int64(6))
	// Just under the floor for one more entry; a statfs taken after the
	// drop would show the segment's bytes free (this one is not asked).
	fs.set(func(f *faultFS) { f.free = int64(cfg.MinFreeBytes) + 1000 })
	require.NoError(t, s.measureFree())
	_, err := s.Append(t.Context(), payload(30, 3000))
	require.NoError(t, err)
	st := s.Stats()
	require.EqualValues(t, 5, st.DroppedOldest, "one segment's entries")
	require.Equal(t, segs, st.Segments, "one dropped, one started by the entry")
	require.Zero(t, st.DroppedNewest)
}

// Nor does a drop_newest refusal wait for the acknowledgements being
// written: flushAcks holds ackMu across its fsyncs (every sync_interval),
// and the appender took ackMu to delete finished segments first even when
// none were waiting to be deleted.
func TestWhenFull_DropNewestDoesNotWaitForAckWrites(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxBytes = 4 * cfg.SegmentBytes
	cfg.WhenFull = WhenFullDropNewest
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 18, 3000)
	require.NoError(t, s.Sync())
	require.NoError(t, s.Ack(ids[0])) // an ack to write

	gate := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	defer release()
	fs.set(func(f *faultFS) { f.syncGate = gate })
	flushed := make(chan error, 1)
	go func() { flushed <- s.flushAcks() }()
	waitFor(t, "the ack write waits for its fsync", func() bool {
		if s.ackMu.TryLock() {
			s.ackMu.Unlock()
			return false
		}
		return true
	})

	done := make(chan error, 1)
	go func() {
		var err error
		for i := range 8 { // past max_bytes
			if _, err = s.Append(context.Background(), payload(uint64(18+i), 3000)); err != nil {
				break
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrFull)
	case <-time.After(10 * time.Second):
		release()
		<-done
		t.Fatal("when_full: drop_newest waited for the ack file's fsync")
	}
	release()
	require.NoError(t, <-flushed)
}
