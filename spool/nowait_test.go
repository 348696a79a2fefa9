package spool

import (
	"context"
	"os"
	"strings"
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

// Nor does drop_oldest wait for a send in progress: deleting the oldest
// segment took ackMu, which flushAcks holds across the ack files' fsyncs,
// and rmu, which a reader holds across its reads (a slow disk, a large
// batch), so an appender that had to drop waited for both. The segment
// being read or having its acks written is dropped under them: the reader
// returns what it read and moves on, the ack of a dropped entry is not an
// error, the ack write removes the file it wrote for a deleted segment,
// and the drop is counted.
func TestWhenFull_DropOldestDoesNotWaitForAReaderOrAckWrites(t *testing.T) {
	for _, tc := range []struct {
		name           string
		reader, ackers bool
	}{
		{name: "busy_reader", reader: true},
		{name: "ack_write_in_progress", ackers: true},
		{name: "both", reader: true, ackers: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t) // 16 KiB segments: 5 entries of 3000 bytes each
			cfg.MaxBytes = 4 * cfg.SegmentBytes
			cfg.WhenFull = WhenFullDropOldest
			fs := &faultFS{fs: osFS{}}
			s := openWB(t, cfg, Settings{fs: fs})
			ids := fill(t, s, 16, 3000) // three segments and some
			require.NoError(t, s.Sync())
			firstSeg := segFiles(t, cfg.Dir)[0]

			gate := make(chan struct{})
			released := false
			release := func() {
				if !released {
					released = true
					close(gate)
				}
			}
			defer release()
			type read struct {
				id  ID
				b   []byte
				err error
			}
			readc := make(chan read, 1)
			if tc.reader {
				r := fs.reads.Load()
				fs.set(func(f *faultFS) { f.readGate = gate })
				go func() {
					id, b, err := s.Next(t.Context())
					readc <- read{id, b, err}
				}()
				waitFor(t, "the reader is in a read", func() bool { return fs.reads.Load() > r })
			}
			flushed := make(chan error, 1)
			if tc.ackers {
				require.NoError(t, s.Ack(ids[1])) // an ack to write, in the oldest segment
				fs.set(func(f *faultFS) { f.ackSyncGate = gate })
				go func() { flushed <- s.flushAcks() }()
				waitFor(t, "the ack write waits for its fsync", func() bool {
					if s.ackMu.TryLock() {
						s.ackMu.Unlock()
						return false
					}
					return true
				})
			}

			done := make(chan error, 1)
			go func() {
				var err error
				for i := range 8 { // past max_bytes
					if _, err = s.Append(context.Background(), payload(uint64(16+i), 3000)); err != nil {
						break
					}
				}
				done <- err
			}()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				release()
				<-done
				t.Fatal("when_full: drop_oldest waited for a read or an ack write in progress")
			}
			st := s.Stats()
			require.Positive(t, st.DroppedOldest)
			require.Zero(t, st.DroppedNewest)
			_, err := os.Stat(firstSeg)
			require.ErrorIs(t, err, os.ErrNotExist, "the oldest segment is dropped")

			release()
			if tc.ackers {
				require.NoError(t, <-flushed, "an ack write whose segment was dropped is no error")
			}
			var got []ID
			if tc.reader {
				r := <-readc
				require.NoError(t, r.err)
				require.Equal(t, ids[0], r.id, "what the busy reader read")
				seq, err := checkPayload(r.b)
				require.NoError(t, err)
				require.Equal(t, uint64(0), seq)
				require.NoError(t, s.Ack(r.id), "the ack of a dropped entry is no error")
			}
			require.NoError(t, s.Sync()) // the appended entries are written
			more, data := drain(t, s)
			got = append(got, more...)
			require.NotEmpty(t, got)
			require.Greater(t, got[0], ids[len(ids)-1]-ID(len(ids)), "reading goes on after the dropped segment")
			for i, b := range data {
				seq, err := checkPayload(b)
				require.NoError(t, err)
				require.Equal(t, uint64(more[i]-1), seq)
			}
			require.Equal(t, uint64(len(ids)+8)-st.DroppedOldest-boolN(tc.ackers), uint64(len(got)),
				"every entry not dropped (or acked) is read once")

			require.NoError(t, s.Sync())
			require.NoError(t, s.flushAcks())
			_, err = os.Stat(strings.TrimSuffix(firstSeg, ".seg") + ".ack")
			require.ErrorIs(t, err, os.ErrNotExist, "no ack file is left for the dropped segment")
			require.Equal(t, dirBytes(t, cfg.Dir), s.Stats().Bytes, "the bytes counted are the bytes on disk")
		})
	}
}

func boolN(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
