package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// holdWriter returns Settings whose writer waits, before it takes the
// stage and holding no lock, until release is called: appenders fill the
// stage meanwhile, as they do while the writer lingers or is busy. The
// test defers release (before the cleanup's Close, which waits for the
// writer).
func holdWriter(set Settings) (Settings, func()) {
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	set.beforeTake = func() { <-gate }
	return set, release
}

// With the room held by staged entries (the writer has not written them
// yet), a refusal names max_bytes, not a free-disk floor that is not even
// set.
func TestWriteBehind_FullReasonCountsStagedBytes(t *testing.T) {
	cfg := testConfig(t) // min_free_bytes 0
	cfg.MaxBytes = 2 * cfg.SegmentBytes
	cfg.WhenFull = WhenFullDropNewest
	set, release := holdWriter(Settings{})
	s := openWB(t, cfg, set)
	defer release()
	var err error
	for i := 0; ; i++ {
		_, err = s.Append(t.Context(), payload(uint64(i), 1000))
		if err != nil {
			break
		}
		require.Less(t, i, 100, "max_bytes never applied to staged entries")
	}
	require.ErrorIs(t, err, ErrFull)
	require.Contains(t, err.Error(), "max_bytes")
}

// when_full: drop_newest never holds an appender: with the writer failing
// (ENOSPC) and the stage full, a new entry is refused with ErrFull, even
// when a free-space check has lifted the ENOSPC stop meanwhile. It used to
// wait for the writer to take the stage, which it does only once a write
// succeeds: the source stalled for as long as the disk stayed full.
func TestWriteBehind_DropNewestDoesNotWaitForAFailingWriter(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 << 20
	cfg.WhenFull = WhenFullDropNewest
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	first, err := s.Append(t.Context(), payload(0, 100))
	require.NoError(t, err)
	waitFor(t, "the writer meets ENOSPC", func() bool { return s.noSpace.Load() })
	require.NoError(t, s.measureFree()) // the maintainer's check lifts the stop; the writer waits to retry
	ids := []ID{first}
	const size = 64 << 10
	var ferr error
	for i := 1; i < 40; i++ {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		id, err := s.Append(ctx, payload(uint64(i), size))
		cancel()
		if err != nil {
			ferr = err
			break
		}
		ids = append(ids, id)
	}
	require.ErrorIs(t, ferr, ErrFull, "an appender with when_full: drop_newest waited for the writer")
	require.Less(t, len(ids), 40)

	fs.set(func(f *faultFS) { f.writeErr = nil })
	require.NoError(t, s.measureFree())
	s.spaceEv.broadcast() // what a deletion does; the writer retries
	waitFor(t, "the staged entries are written", func() bool { return s.Stats().Staged == 0 })
	require.NoError(t, s.Close())
	_, _, all := readAll(t, cfg)
	require.Equal(t, ids, all)
}

// when_full: drop_oldest keeps the newest entries: when what holds the
// room is entries still staged (nothing on disk to drop yet), the appender
// waits for the writer to write them, then drops the oldest. It used to
// refuse the new entry (ErrFull, counted as dropped_newest).
func TestWriteBehind_DropOldestWaitsForStagedEntriesRatherThanRefusing(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxBytes = 2 * cfg.SegmentBytes
	cfg.WhenFull = WhenFullDropOldest
	set, release := holdWriter(Settings{})
	s := openWB(t, cfg, set)
	defer release()
	// The writer goes on once an appender has had to wait for it (or,
	// before the fix, once one was refused).
	go func() {
		for s.flushWaiters.Load() == 0 && s.Stats().DroppedNewest == 0 {
			time.Sleep(time.Millisecond)
		}
		release()
	}()
	var last ID
	for i := range 200 {
		id, err := s.Append(t.Context(), payload(uint64(i), 1000))
		require.NoError(t, err, "entry %d", i)
		last = id
	}
	st := s.Stats()
	require.Zero(t, st.DroppedNewest, "drop_oldest refused a new entry")
	require.Positive(t, st.DroppedOldest)
	require.NoError(t, s.Sync())
	require.NoError(t, s.Close())
	_, _, all := readAll(t, cfg)
	require.NotEmpty(t, all)
	require.Equal(t, last, all[len(all)-1], "the newest entry is kept")
}

// when_full: drop_oldest with the writer failing (ENOSPC) and the stage
// full drops one segment per attempt of the writer, as the synchronous path
// drops one per failed write: once a free-space check has lifted the ENOSPC
// stop, a dropped segment is what the writer's next attempt needs, not
// another drop. (With the stage counted as full while the writer failed,
// one appender dropped every segment in a row before the writer woke.)
func TestWriteBehind_DropOldestDoesNotOutrunAFailingWriter(t *testing.T) {
	cfg := testConfig(t) // 16 KiB segments
	cfg.WhenFull = WhenFullDropOldest
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	fill(t, s, 50, 3000)
	require.NoError(t, s.Sync())
	segs := s.Stats().Segments
	require.Greater(t, segs, int64(8))

	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	_, err := s.Append(t.Context(), payload(50, 100))
	require.NoError(t, err)
	waitFor(t, "the writer meets ENOSPC", func() bool { return s.noSpace.Load() })
	require.NoError(t, s.measureFree()) // the writer waits to retry (up to a second)
	const size = 64 << 10
	for i := 51; ; i++ {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		_, err := s.Append(ctx, payload(uint64(i), size))
		cancel()
		if err != nil {
			break
		}
		require.Less(t, i, 80, "the stage never filled")
	}
	// 5 entries a segment; every segment (45 entries) went before. A
	// loaded machine may let the writer retry (every second) once or
	// twice meanwhile: one segment each.
	require.LessOrEqual(t, s.Stats().DroppedOldest, uint64(20),
		"an appender dropped segments faster than the writer tried to write")

	fs.set(func(f *faultFS) { f.writeErr = nil })
	require.NoError(t, s.measureFree())
	s.spaceEv.broadcast()
	waitFor(t, "the staged entries are written", func() bool { return s.Stats().Staged == 0 })
}

// Rolling an active segment that is still empty and starts at the next ID
// to write is nothing to do. dropOldestLocked decides it must roll ("only
// one segment") before it takes fmu; meanwhile the writer may roll itself
// and fail its write (ENOSPC), leaving such an empty segment active. The
// second roll then created a file of the same name: EEXIST, and the
// writer's every retry met it again until Close lost the stage.
func TestRoll_EmptyActiveAtTheNextIDIsNotRolledAgain(t *testing.T) {
	for _, wb := range []bool{false, true} {
		cfg := testConfig(t)
		var s *Spool
		if wb {
			s = openWB(t, cfg)
		} else {
			s = open(t, cfg)
		}
		ids := fill(t, s, 3, 100)
		require.NoError(t, s.Sync())
		s.fmu.Lock()
		err1 := s.rollLocked() // what the writer does
		err2 := s.rollLocked() // what a drop_oldest appender did right after
		s.fmu.Unlock()
		require.NoError(t, err1)
		require.NoError(t, err2, "write_behind=%v", wb)
		var more []ID
		for i := range 3 {
			id, err := s.Append(t.Context(), payload(uint64(len(ids)+i), 100))
			require.NoError(t, err)
			more = append(more, id)
		}
		require.NoError(t, s.Sync())
		require.NoError(t, s.Close())
		_, _, all := readAll(t, cfg)
		require.Equal(t, append(ids, more...), all)
	}
}

// A random mix of appenders, a batch reader that acknowledges what it
// reads (sometimes before reading the next, sometimes Rewinding), Sync and
// WaitDurable callers, on the write-behind with small segments, a small
// max_bytes that blocks appenders, and a short sync interval. Every
// accepted entry is read intact (at least once), none is invented, and
// Close ends every goroutine. SPOOL_STRESS_SECONDS runs it longer.
func TestWriteBehind_StressRandomMix(t *testing.T) {
	dur := 500 * time.Millisecond
	if v := os.Getenv("SPOOL_STRESS_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		dur = time.Duration(n) * time.Second
	}
	for _, c := range []struct {
		sync   SyncPolicy
		full   WhenFull
		faults bool // writes fail now and then with ENOSPC or EIO (and the truncate after them)
	}{
		{SyncInterval, WhenFullBlock, false},
		{SyncNever, WhenFullBlock, false},
		{SyncInterval, WhenFullDropOldest, false},
		{SyncInterval, WhenFullDropOldest, true},
		{SyncNever, WhenFullDropNewest, true},
	} {
		t.Run(fmt.Sprintf("%s/%s/faults=%v", c.sync, c.full, c.faults), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Sync = c.sync
			cfg.SyncInterval = 5 * time.Millisecond
			cfg.MaxBytes = 8 * cfg.SegmentBytes
			cfg.WhenFull = c.full
			fs := &faultFS{fs: osFS{}}
			s := openWB(t, cfg, Settings{fs: fs})
			ctx, cancel := context.WithTimeout(t.Context(), dur)
			defer cancel()
			// tolerable: what a failing disk makes Sync, WaitDurable,
			// Ack of a staged entry and drop_newest appends return.
			tolerable := func(err error) bool {
				return c.faults && !errors.Is(err, ErrClosed)
			}
			var fwg sync.WaitGroup
			if c.faults {
				fwg.Add(1)
				go func() {
					defer fwg.Done()
					r := rand.New(rand.NewPCG(5, 5))
					for ctx.Err() == nil {
						var e, te, fe error
						switch r.IntN(6) {
						case 0:
							e = syscall.ENOSPC
						case 1:
							e = syscall.EIO
							if r.IntN(2) == 0 {
								// The partial frame stays: the segment is
								// left behind.
								te = syscall.EIO
							}
						case 2:
							// The first frame of each new segment fails
							// and stays: the empty segment is repaired.
							fe, te = syscall.EIO, syscall.EIO
						}
						fs.set(func(f *faultFS) { f.writeErr, f.truncErr, f.firstErr = e, te, fe })
						time.Sleep(time.Duration(1+r.IntN(20)) * time.Millisecond)
						if e != nil || fe != nil {
							fs.set(func(f *faultFS) { f.writeErr, f.firstErr = nil, nil })
							if r.IntN(2) == 0 { // else the truncate fails on: a repair replaces the file
								fs.set(func(f *faultFS) { f.truncErr = nil })
							}
							_ = s.measureFree() // what the maintainer does every second
							s.spaceEv.broadcast()
							time.Sleep(time.Duration(1+r.IntN(30)) * time.Millisecond)
						}
					}
					fs.set(func(f *faultFS) { f.writeErr, f.truncErr, f.firstErr = nil, nil, nil })
				}()
			}

			var mu sync.Mutex
			accepted := map[ID]uint64{} // id -> seq
			seen := map[ID]bool{}
			var seq sync.Mutex
			next := uint64(0)
			var wg sync.WaitGroup
			errc := make(chan error, 16)
			for a := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(a), 7))
					for ctx.Err() == nil {
						seq.Lock()
						n := next
						next++
						seq.Unlock()
						size := 12 + r.IntN(3000)
						if r.IntN(50) == 0 {
							size = 12 + r.IntN(20000) // larger than a segment
						}
						p := payload(n, size)
						var id ID
						var err error
						if r.IntN(2) == 0 {
							id, err = s.Append(ctx, p)
						} else {
							cut := r.IntN(len(p) + 1)
							id, err = s.AppendParts(ctx, p[:cut], p[cut:])
						}
						if err != nil {
							if ctx.Err() != nil {
								return
							}
							if tolerable(err) {
								continue
							}
							errc <- err
							return
						}
						mu.Lock()
						accepted[id] = n
						mu.Unlock()
						switch r.IntN(20) {
						case 0:
							if err := s.Sync(); err != nil && !tolerable(err) {
								errc <- err
								return
							}
						case 1:
							wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
							err := s.WaitDurable(wctx, id)
							wcancel()
							if err != nil && ctx.Err() == nil && !tolerable(err) {
								errc <- err
								return
							}
						case 2:
							// Acked before it is read: maybe still staged.
							if err := s.Ack(id); err != nil {
								if !tolerable(err) {
									errc <- err
									return
								}
							} else {
								mu.Lock()
								seen[id] = true
								mu.Unlock()
							}
						}
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(99, 1))
				buf := make([]byte, 0, 8<<10)
				var ents []Entry
				for ctx.Err() == nil {
					var err error
					bctx, bcancel := context.WithTimeout(ctx, 20*time.Millisecond)
					ents, _, err = s.NextBatch(bctx, buf[:0], 1+r.IntN(20), ents[:0])
					bcancel()
					if err != nil {
						if ctx.Err() != nil {
							return
						}
						if errors.Is(err, context.DeadlineExceeded) {
							// Caught up; what is left unacknowledged may
							// hold the room the appenders wait for.
							s.Rewind()
							continue
						}
						errc <- err
						return
					}
					for _, e := range ents {
						n, err := checkPayload(e.Data)
						if err != nil {
							errc <- err
							return
						}
						mu.Lock()
						want, ok := accepted[e.ID]
						if ok && want != n {
							mu.Unlock()
							errc <- errors.New("an entry holds another's payload")
							return
						}
						seen[e.ID] = true
						mu.Unlock()
						if r.IntN(10) != 0 { // some stay unacknowledged until a Rewind
							if err := s.Ack(e.ID); err != nil {
								errc <- err
								return
							}
						}
					}
					if r.IntN(100) == 0 {
						s.Rewind()
					}
				}
			}()
			wg.Wait()
			fwg.Wait()
			close(errc)
			for err := range errc {
				require.NoError(t, err)
			}
			// Whatever is still unseen is read now.
			waitFor(t, "the writer writes what is staged", func() bool { _ = s.measureFree(); s.spaceEv.broadcast(); return s.Stats().Staged == 0 })
			require.NoError(t, s.Sync())
			s.Rewind()
			for {
				ents, _, err := s.tryBatch(make([]byte, 0, 64<<10), 1000, nil)
				require.NoError(t, err)
				if len(ents) == 0 {
					break
				}
				for _, e := range ents {
					n, err := checkPayload(e.Data)
					require.NoError(t, err)
					want, ok := accepted[e.ID]
					require.True(t, !ok || want == n, "entry %d holds another's payload", e.ID)
					seen[e.ID] = true
				}
			}
			st := s.Stats()
			require.Zero(t, st.Staged)
			require.Zero(t, st.Unwritten)
			require.NotEmpty(t, accepted)
			unseen := 0
			for id := range accepted {
				if !seen[id] {
					unseen++
				}
			}
			// Only drop_oldest may lose entries, and it counts them.
			require.LessOrEqual(t, uint64(unseen), st.DroppedOldest, "accepted entries never read")
			if !c.faults { // a refused write makes drop_oldest refuse too
				require.Zero(t, st.DroppedNewest)
			}
			require.NoError(t, s.Close())
			require.GreaterOrEqual(t, s.Durable(), maxKey(accepted))
		})
	}
}

func maxKey(m map[ID]uint64) ID {
	var x ID
	for k := range m {
		x = max(x, k)
	}
	return x
}

// Entries larger than the stage (and than the frame buffer) between small
// ones, from several appenders at once: each large one is staged alone,
// the stage's buffer does not stay grown, and every entry reads back
// intact, from memory or from the file.
func TestWriteBehind_EntriesLargerThanTheStage(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 20
	cfg.MaxBytes = 1 << 30
	s := openWB(t, cfg)
	var mu sync.Mutex
	want := map[ID]uint64{}
	var wg sync.WaitGroup
	for a := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 6 {
				seq := uint64(a*100 + i)
				size := 200
				if i%3 == 1 {
					size = stageMax + 1000*(a+1) // larger than the stage
				}
				id, err := s.Append(t.Context(), payload(seq, size))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[id] = seq
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.NoError(t, s.Sync())
	got := map[ID]uint64{}
	for {
		ents, _, err := s.tryBatch(make([]byte, 0, 3<<20), 100, nil)
		require.NoError(t, err)
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			seq, err := checkPayload(e.Data)
			require.NoError(t, err)
			got[e.ID] = seq
		}
	}
	require.Equal(t, want, got)
	require.Zero(t, s.Stats().Staged)
	require.NoError(t, s.Close())
	_, _, all := func() (*Spool, *logRecorder, []ID) {
		log, rec := newLog(t)
		s2 := open(t, cfg, Settings{Logger: log})
		ids, data := drain(t, s2)
		for i, b := range data {
			seq, err := checkPayload(b)
			require.NoError(t, err)
			require.Equal(t, want[ids[i]], seq)
		}
		return s2, rec, ids
	}()
	require.Len(t, all, len(want))
}

// The counters across a failed write and what Close cannot write: Entries
// counts accepted entries (staged ones too) until they are lost, Bytes only
// what is on disk, Staged and Unwritten what they say.
func TestWriteBehind_CountersAcrossFailures(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	fill(t, s, 5, 200)
	require.NoError(t, s.Sync())
	written := s.Stats()
	require.EqualValues(t, 5, written.Entries)

	fs.set(func(f *faultFS) { f.writeErr = syscall.EIO })
	for i := range 4 {
		_, err := s.Append(t.Context(), payload(uint64(5+i), 200))
		require.NoError(t, err)
	}
	waitFor(t, "the writer fails", func() bool { return s.wfailing.Load() })
	st := s.Stats()
	require.EqualValues(t, 9, st.Entries)
	require.EqualValues(t, 4, st.Staged)
	require.Equal(t, written.Bytes, st.Bytes, "a failed write (cut off again) changed Bytes")
	require.Zero(t, st.Unwritten)

	require.Error(t, s.Close())
	st = s.Stats()
	require.EqualValues(t, 5, st.Entries)
	require.Zero(t, st.Staged)
	require.EqualValues(t, 4, st.Unwritten)
	require.Equal(t, s.staged.Load(), int64(0))
}

// An appender already waiting for a full stage when the writer's write
// fails is not left waiting for the writer's recovery: with drop_newest it
// gets ErrFull.
func TestWriteBehind_StageWaiterSeesTheWriterFail(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 << 20
	cfg.WhenFull = WhenFullDropNewest
	fs := &faultFS{fs: osFS{}}
	s := openWB(t, cfg, Settings{fs: fs})
	gate := make(chan struct{})
	w0 := fs.writes.Load()
	fs.set(func(f *faultFS) { f.writeGate = gate })
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	defer open()
	first, err := s.Append(t.Context(), payload(0, 100))
	require.NoError(t, err)
	waitFor(t, "the writer is in write(2)", func() bool { return fs.writes.Load() > w0 })
	ids := []ID{first}
	const size = 64 << 10
	for i := 1; i <= 15; i++ { // the stage is full after these
		id, err := s.Append(t.Context(), payload(uint64(i), size))
		require.NoError(t, err)
		ids = append(ids, id)
	}
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := s.Append(ctx, payload(16, size))
		res <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it wait for the stage (it may not have yet: then it sees the failure first)
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC; f.writeGate = nil })
	open()
	require.ErrorIs(t, <-res, ErrFull)

	fs.set(func(f *faultFS) { f.writeErr = nil })
	require.NoError(t, s.measureFree())
	s.spaceEv.broadcast()
	waitFor(t, "the staged entries are written", func() bool { return s.Stats().Staged == 0 })
	require.NoError(t, s.Close())
	_, _, all := readAll(t, cfg)
	require.Equal(t, ids, all)
}
