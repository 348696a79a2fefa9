package spool

import (
	"context"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An Append with sync: interval returns while the writer is still in
// write(2); nothing reads, acknowledges or calls durable an entry before it
// is written.
func TestWriteBehind_AppendDoesNotWaitForTheWrite(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	gate := make(chan struct{})
	fs.set(func(f *faultFS) { f.writeGate = gate })
	released := false
	defer func() {
		if !released {
			close(gate)
		}
	}()

	first, err := s.Append(t.Context(), payload(0, 100))
	require.NoError(t, err)
	waitFor(t, "the writer is in write(2)", func() bool { return fs.writes.Load() > 0 })
	var ids []ID
	for i := range 20 {
		id, err := s.Append(t.Context(), payload(uint64(i+1), 100)) // staged behind the blocked write
		require.NoError(t, err)
		ids = append(ids, id)
	}
	st := s.Stats()
	require.EqualValues(t, 21, st.Entries, "accepted entries count")
	require.EqualValues(t, 21, st.Staged, "the writer's run and the stage behind it")
	_, _, ok, err := s.TryNext(nil)
	require.NoError(t, err)
	require.False(t, ok, "an entry was handed out before it was written")
	require.Less(t, s.Durable(), first)

	close(gate)
	released = true
	require.NoError(t, s.Sync())
	require.GreaterOrEqual(t, s.Durable(), ids[len(ids)-1])
	require.Zero(t, s.Stats().Staged)
	got, data := drain(t, s)
	require.Equal(t, append([]ID{first}, ids...), got)
	for i, b := range data {
		seq, err := checkPayload(b)
		require.NoError(t, err)
		require.EqualValues(t, i, seq)
	}
	// Runs of frames went out in few writes: one for the first entry, one
	// (or a few, if the writer took the stage early) for the 20 behind it.
	require.LessOrEqual(t, fs.writes.Load(), int64(5))
}

// The stage is bounded: with the writer stuck, an appender waits once the
// stage holds stageMax bytes, and gives up with its ctx without taking the
// entry.
func TestWriteBehind_StageIsBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 << 20
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	gate := make(chan struct{})
	fs.set(func(f *faultFS) { f.writeGate = gate })
	defer close(gate)
	_, err := s.Append(t.Context(), payload(0, 1000))
	require.NoError(t, err)
	waitFor(t, "the writer is in write(2)", func() bool { return fs.writes.Load() > 0 })

	const size = 64 << 10
	n := 0
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		_, err := s.Append(ctx, payload(uint64(n+1), size))
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		n++
		require.Less(t, n, 100, "the stage grew past its bound")
	}
	s.wmu.Lock()
	staged := len(s.stage)
	s.wmu.Unlock()
	require.LessOrEqual(t, staged, stageMax)
	require.Greater(t, staged+size, stageMax, "the appender waited before the stage was full")
	require.EqualValues(t, n+1, s.Stats().Staged, "the refused entry was not taken")
}

// ENOSPC from the writer: the accepted entries stay staged and are written
// once there is room; meanwhile the spool is full for new entries
// (when_full applies to them) and Sync reports the failure.
func TestWriteBehind_ENOSPCKeepsAcceptedEntriesAndRetries(t *testing.T) {
	cfg := testConfig(t)
	cfg.WhenFull = WhenFullDropNewest
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 10, 300)
	require.NoError(t, s.Sync())

	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	id, err := s.Append(t.Context(), payload(10, 300))
	require.NoError(t, err, "accepted: the writer has not failed yet")
	waitFor(t, "the writer meets ENOSPC", func() bool { return s.noSpace.Load() })
	require.Error(t, s.Sync(), "Sync cannot make a staged entry durable")
	_, err = s.Append(t.Context(), payload(11, 300))
	require.ErrorIs(t, err, ErrFull)
	require.EqualValues(t, 1, s.Stats().Staged)

	fs.set(func(f *faultFS) { f.writeErr = nil })
	require.NoError(t, s.measureFree()) // what the maintainer does every second
	waitFor(t, "the staged entry is written", func() bool { return s.Stats().Staged == 0 })
	require.NoError(t, s.Sync())
	require.GreaterOrEqual(t, s.Durable(), id)
	require.NoError(t, s.Close())

	s2, _, all := readAll(t, cfg)
	require.Equal(t, append(ids, id), all, "nothing accepted was lost and the half-written run is gone")
	require.Zero(t, s2.Stats().TornTails)
	require.Zero(t, s2.Stats().CorruptEntries)
}

// A directory made read-only while the writer must start a segment: the
// writer backs off and tries again, the entries wait, nothing is lost.
func TestWriteBehind_RefusedRollIsRetried(t *testing.T) {
	cfg := testConfig(t) // 16 KiB segments
	fs := &faultFS{fs: osFS{}}
	log, rec := newLog(t)
	s := openWB(t, cfg, Settings{fs: fs, Logger: log})
	fs.set(func(f *faultFS) { f.dirFault = syscall.EACCES })
	ids := fill(t, s, 10, 3000) // the 6th needs a new segment
	waitFor(t, "the writer's roll is refused", func() bool { return s.Stats().WriteErrors > 0 })
	require.Greater(t, s.Stats().Staged, int64(0))
	fs.set(func(f *faultFS) { f.dirFault = nil })
	waitFor(t, "the staged entries are written", func() bool { return s.Stats().Staged == 0 })
	require.NoError(t, s.Close())
	require.Equal(t, 1, rec.count(slog.LevelError, "refuses writes"))
	_, _, all := readAll(t, cfg)
	require.Equal(t, ids, all)
}

// What the writer still cannot write at Close is lost: counted, logged, and
// Durable stops short of it for good, so no checkpoint covers it (the file
// source reads those lines again).
func TestWriteBehind_CloseCountsWhatItCannotWrite(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	log, rec := newLog(t)
	s := openWB(t, cfg, Settings{fs: fs, Logger: log})
	ids := fill(t, s, 3, 200)
	require.NoError(t, s.Sync())
	fs.set(func(f *faultFS) { f.writeErr = syscall.EIO })
	lost := fill(t, s, 4, 200)
	waitFor(t, "the writer fails", func() bool { return s.wfailing.Load() })
	require.NoError(t, s.syncData()) // a sync round while they wait
	require.Less(t, s.Durable(), lost[0], "a sync round made staged entries durable")
	require.Error(t, s.Close())
	st := s.Stats()
	require.EqualValues(t, 4, st.Unwritten)
	require.Less(t, s.Durable(), lost[0], "Durable covers entries never written")
	require.Equal(t, 1, rec.count(slog.LevelError, "could not be written and are lost"))

	fs.set(func(f *faultFS) { f.writeErr = nil })
	_, _, all := readAll(t, cfg)
	require.Equal(t, ids, all)
}

// An entry acknowledged before it is read (and before it is written) is
// acknowledged once written, not refused as unknown.
func TestWriteBehind_AckOfAStagedEntry(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	gate := make(chan struct{})
	fs.set(func(f *faultFS) { f.writeGate = gate })
	a, err := s.Append(t.Context(), payload(0, 100))
	require.NoError(t, err)
	b, err := s.Append(t.Context(), payload(1, 100))
	require.NoError(t, err)
	acked := make(chan error, 1)
	go func() { acked <- s.Ack(b) }()
	close(gate)
	require.NoError(t, <-acked)
	require.ErrorIs(t, s.Ack(b+1), ErrUnknownID)
	got, _ := drain(t, s)
	require.Equal(t, []ID{a}, got)
}

// AppendParts stores head followed by body as one entry, on both write
// paths, small and larger than the frame buffer.
func TestAppendParts_IsAppendOfTheJoinedEntry(t *testing.T) {
	for _, wb := range []bool{false, true} {
		cfg := testConfig(t)
		cfg.SegmentBytes = 8 << 20
		var s *Spool
		if wb {
			s = openWB(t, cfg)
		} else {
			s = open(t, cfg)
		}
		var want [][]byte
		for i, size := range []int{0, 1, 500, wbufMax + 3} {
			e := payload(uint64(i), 12+size)
			cut := min(len(e), 5+i)
			_, err := s.AppendParts(t.Context(), e[:cut], e[cut:])
			require.NoError(t, err)
			want = append(want, e)
		}
		require.NoError(t, s.Sync())
		_, got := drain(t, s)
		require.Equal(t, want, got, "write_behind=%v", wb)
		require.NoError(t, s.Close())
		_, _, all := readAll(t, cfg) // and the CRCs hold after a reopen
		require.Len(t, all, len(want))
	}
}

// A reader right behind the writer gets the last written run from memory,
// from any offset in it, the same bytes a read from the file gives.
func TestWriteBehind_ReaderBehindTheWriterReadsFromMemory(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 << 20
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 1, 100)
	require.NoError(t, s.flushStage())
	ents, _, err := s.tryBatch(make([]byte, 0, 2000), 1, nil) // the reader has the segment open
	require.NoError(t, err)
	require.Len(t, ents, 1)
	gate := make(chan struct{})
	fs.set(func(f *faultFS) { f.writeGate = gate })
	w0 := fs.writes.Load()
	id, err := s.Append(t.Context(), payload(1, 100)) // the writer takes it and waits in write(2)
	require.NoError(t, err)
	ids = []ID{id}
	waitFor(t, "the writer is in write(2)", func() bool { return fs.writes.Load() > w0 })
	for i := range 30 { // one run behind it
		id, err := s.Append(t.Context(), payload(uint64(i+2), 700))
		require.NoError(t, err)
		ids = append(ids, id)
	}
	close(gate)
	require.NoError(t, s.flushStage())
	before := fs.readBytes.Load()
	var got []ID
	for {
		// Room for two or three entries a read: each read after the first
		// starts inside the run.
		ents, _, err := s.tryBatch(make([]byte, 0, 2000), 100, nil)
		require.NoError(t, err)
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			seq, err := checkPayload(e.Data)
			require.NoError(t, err)
			require.EqualValues(t, e.ID-1, seq, "entry %d holds another's bytes", e.ID)
			got = append(got, e.ID)
		}
	}
	require.Equal(t, ids, got)
	require.LessOrEqual(t, fs.readBytes.Load()-before, int64(2000), "the run was read back from the file")
	require.NoError(t, s.Close())
	_, _, all := readAll(t, cfg) // and the file holds the same, none acknowledged
	require.Equal(t, append([]ID{ents[0].ID}, ids...), all)
}

// The writer's buffers grow with the rate, from the size of an entry, and a
// writer idle for stageIdleRelease gives them back.
func TestWriteBehind_BuffersFollowTheRateAndGoWhenIdle(t *testing.T) {
	cfg := testConfig(t)
	s := openWB(t, cfg, Settings{idleRelease: 50 * time.Millisecond})
	_, err := s.Append(t.Context(), payload(0, 100))
	require.NoError(t, err)
	s.wmu.Lock()
	c := cap(s.stage)
	s.wmu.Unlock()
	require.LessOrEqual(t, c, 64<<10, "one small entry took a large stage")
	require.NoError(t, s.flushStage())
	waitFor(t, "the idle writer gives its buffers back", func() bool {
		s.recentMu.RLock()
		defer s.recentMu.RUnlock()
		return s.recent.buf == nil
	})
	s.wmu.Lock()
	require.Nil(t, s.stage)
	s.wmu.Unlock()
	// And it writes again.
	id, err := s.Append(t.Context(), payload(1, 100))
	require.NoError(t, err)
	require.NoError(t, s.flushStage())
	got, _ := drain(t, s)
	require.Equal(t, []ID{id - 1, id}, got)
}
