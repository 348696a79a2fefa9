package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// faultFS wraps a fileSystem to inject faults: writes that fail with ENOSPC
// after writing part of their bytes (as a real full disk does), failing
// fsyncs, and a made-up free-space figure.
type faultFS struct {
	fs          fileSystem
	mu          sync.Mutex
	writeErr    error         // writes fail with it, after writing half
	syncErr     error         // Sync fails with it
	free        int64         // DiskSpace reports it as free when > 0
	total       int64         // DiskSpace reports it as the size when > 0
	dirFault    error         // see dirErr
	removeFault error         // Remove fails with it
	truncErr    error         // Truncate fails with it
	firstErr    error         // the first write after a file's header fails with it, after half
	syncGate    chan struct{} // when set, Sync waits for it to be closed
	writeGate   chan struct{} // when set, segment writes wait for it to be closed
	readGate    chan struct{} // when set, reads wait for it to be closed
	ackSyncGate chan struct{} // when set, Syncs of ack files wait for it to be closed
	reads       atomic.Int64  // reads started
	writes      atomic.Int64  // segment writes started
	readBytes   atomic.Int64
}

func (f *faultFS) set(fn func(f *faultFS)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

func (f *faultFS) get() (writeErr, syncErr error, free int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writeErr, f.syncErr, f.free
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	if we, _, _ := f.get(); we != nil && flag&os.O_CREATE != 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: we}
	}
	if de := f.dirErr(); de != nil && flag&os.O_CREATE != 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: de}
	}
	fl, err := f.fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{file: fl, fs: f, fresh: flag&os.O_CREATE != 0, name: name}, nil
}
func (f *faultFS) Remove(name string) error {
	f.mu.Lock()
	re := f.removeFault
	f.mu.Unlock()
	if re != nil {
		return &os.PathError{Op: "remove", Path: name, Err: re}
	}
	if de := f.dirErr(); de != nil {
		return &os.PathError{Op: "remove", Path: name, Err: de}
	}
	return f.fs.Remove(name)
}
func (f *faultFS) Rename(o, n string) error {
	if de := f.dirErr(); de != nil {
		return &os.LinkError{Op: "rename", Old: o, New: n, Err: de}
	}
	return f.fs.Rename(o, n)
}

// dirErr is the error of a directory made read-only (EACCES, EROFS):
// creating, renaming and removing files fail with it, while the files
// already open stay writable, as with chmod a-w on the directory.
func (f *faultFS) dirErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dirFault
}
func (f *faultFS) ReadDir(name string) ([]os.DirEntry, error)   { return f.fs.ReadDir(name) }
func (f *faultFS) MkdirAll(name string, perm os.FileMode) error { return f.fs.MkdirAll(name, perm) }
func (f *faultFS) SyncDir(name string) error                    { return f.fs.SyncDir(name) }
func (f *faultFS) DiskSpace(dir string) (int64, int64, error) {
	free, total, err := f.fs.DiskSpace(dir)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.free > 0 {
		free, err = f.free, nil
	}
	if f.total > 0 {
		total = f.total
	}
	return free, total, err
}

type faultFile struct {
	file
	fs     *faultFS
	fresh  bool // created by this open: firstErr applies
	name   string
	nwrite int64 // writes to this file (the first is a segment's header)
}

func (f *faultFile) Write(b []byte) (int, error) {
	f.fs.writes.Add(1)
	f.nwrite++
	f.fs.mu.Lock()
	gate, fe := f.fs.writeGate, f.fs.firstErr
	f.fs.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if fe != nil && f.fresh && f.nwrite == 2 {
		n, _ := f.file.Write(b[:len(b)/2])
		return n, &os.PathError{Op: "write", Path: "segment", Err: fe}
	}
	if we, _, _ := f.fs.get(); we != nil {
		n, _ := f.file.Write(b[:len(b)/2])
		return n, &os.PathError{Op: "write", Path: "segment", Err: we}
	}
	return f.file.Write(b)
}

func (f *faultFile) WriteAt(b []byte, off int64) (int, error) {
	if we, _, _ := f.fs.get(); we != nil {
		return 0, we
	}
	return f.file.WriteAt(b, off)
}

func (f *faultFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	te := f.fs.truncErr
	f.fs.mu.Unlock()
	if te != nil {
		return &os.PathError{Op: "truncate", Path: "segment", Err: te}
	}
	return f.file.Truncate(size)
}

func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	gate, ackGate := f.fs.syncGate, f.fs.ackSyncGate
	f.fs.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if ackGate != nil && strings.HasSuffix(f.name, ".ack") {
		<-ackGate
	}
	if _, se, _ := f.fs.get(); se != nil {
		return se
	}
	return f.file.Sync()
}

func (f *faultFile) ReadAt(b []byte, off int64) (int, error) {
	f.fs.reads.Add(1)
	f.fs.mu.Lock()
	gate := f.fs.readGate
	f.fs.mu.Unlock()
	if gate != nil {
		<-gate
	}
	n, err := f.file.ReadAt(b, off)
	f.fs.readBytes.Add(int64(n))
	return n, err
}

// waitBlocked waits until n appends are blocked waiting for room.
func waitBlocked(t *testing.T, s *Spool, n int64) {
	t.Helper()
	for s.Stats().BlockedAppends < n {
		ch := s.blockedEv.wait()
		if s.Stats().BlockedAppends >= n {
			return
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Second): // a deadline, not a pause
			t.Fatalf("no append blocked: %+v", s.Stats())
		}
	}
}

func TestDiskFull_ENOSPCBlocksAppendAndLosesNothing(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = SyncAlways
	cfg.SyncInterval = 10 * time.Millisecond // the retry pace of a blocked append
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 40, 300) // over a segment: a roll comes up while full

	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	type res struct {
		id  ID
		err error
	}
	done := make(chan res, 1)
	go func() {
		id, err := s.Append(context.Background(), payload(40, 300))
		done <- res{id, err}
	}()
	waitBlocked(t, s, 1)
	select {
	case r := <-done:
		t.Fatalf("Append returned while the disk is full: %+v", r)
	default:
	}
	// Readers carry on meanwhile.
	got, _ := drain(t, s)
	require.Equal(t, ids, got)

	fs.set(func(f *faultFS) { f.writeErr = nil })
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, ids[len(ids)-1]+1, r.id)
	require.NoError(t, s.Close())

	s, _, all := readAll(t, cfg)
	require.Equal(t, append(ids, r.id), all, "nothing accepted was lost and the half-written frames are gone")
	require.Zero(t, s.Stats().TornTails)
	require.Zero(t, s.Stats().CorruptEntries)
}

func TestDiskFull_ENOSPCWithDropNewestReportsErrFull(t *testing.T) {
	cfg := testConfig(t)
	cfg.WhenFull = WhenFullDropNewest
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 10, 300)
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	_, err := s.Append(t.Context(), payload(10, 300))
	require.ErrorIs(t, err, ErrFull)
	require.Contains(t, err.Error(), "no space left")
	require.Equal(t, uint64(1), s.Stats().DroppedNewest)
	// Still full until the free space is measured again.
	_, err = s.Append(t.Context(), payload(10, 300))
	require.ErrorIs(t, err, ErrFull)
	fs.set(func(f *faultFS) { f.writeErr = nil })
	require.NoError(t, s.measureFree())
	id, err := s.Append(t.Context(), payload(10, 300))
	require.NoError(t, err)
	require.Equal(t, ids[len(ids)-1]+1, id)
	require.NoError(t, s.Close())

	_, _, all := readAll(t, cfg)
	require.Equal(t, append(ids, id), all)
}

func TestDiskFull_FailedFsyncStopsAppendsUntilReopen(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = SyncAlways
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 5, 100)
	fs.set(func(f *faultFS) { f.syncErr = syscall.EIO })
	_, err := s.Append(t.Context(), payload(5, 100))
	require.ErrorIs(t, err, syscall.EIO)
	_, err = s.Append(t.Context(), payload(6, 100))
	require.ErrorIs(t, err, syscall.EIO, "sticky: the kernel may have dropped what it could not write")
	require.ErrorIs(t, s.WaitDurable(t.Context(), ids[4]+1), syscall.EIO)
	got, _ := drain(t, s) // reading goes on
	require.Equal(t, ids, got[:5])
	fs.set(func(f *faultFS) { f.syncErr = nil })
	require.Error(t, s.Close())

	s, _, all := readAll(t, cfg)
	require.Equal(t, ids, all[:5])
	_, err = s.Append(t.Context(), []byte("after reopen"))
	require.NoError(t, err)
}

func TestFull_BlockWaitsForAcksToFreeASegment(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 8 << 10
	s := open(t, cfg)
	// Fill it: an append with a cancelled context returns at once when it
	// would have to wait.
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	var ids []ID
	for {
		id, err := s.Append(cancelled, payload(uint64(len(ids)), 300))
		if err != nil {
			require.ErrorIs(t, err, context.Canceled, "a blocked append honours its context")
			require.ErrorContains(t, err, "max_bytes")
			break
		}
		ids = append(ids, id)
	}
	require.Greater(t, len(ids), 12)

	done := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), payload(uint64(len(ids)), 300))
		done <- err
	}()
	waitBlocked(t, s, 1)
	got, _ := drain(t, s)
	require.Equal(t, ids, got)
	for _, id := range got[:12] { // the first segment
		require.NoError(t, s.Ack(id))
	}
	require.NoError(t, <-done)
	require.Zero(t, s.Stats().DroppedNewest+s.Stats().DroppedOldest)
	require.LessOrEqual(t, s.Stats().Bytes, int64(cfg.MaxBytes))
}

func TestFull_CloseReleasesBlockedAppends(t *testing.T) {
	cfg := testConfig(t)
	cfg.MinFreeBytes = 1 << 40 // more than any disk here: always full
	s := open(t, cfg)
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), []byte("x"))
		done <- err
	}()
	waitBlocked(t, s, 1)
	require.NoError(t, s.Close())
	require.ErrorIs(t, <-done, ErrClosed)
}

func TestFull_DropNewestRefusesAndCounts(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 8 << 10
	cfg.WhenFull = WhenFullDropNewest
	s := open(t, cfg)
	var ok, refused int
	for i := range 100 {
		_, err := s.Append(t.Context(), payload(uint64(i), 300))
		if errors.Is(err, ErrFull) {
			refused++
			continue
		}
		require.NoError(t, err)
		ok++
	}
	require.Equal(t, uint64(refused), s.Stats().DroppedNewest)
	require.Positive(t, refused)
	require.LessOrEqual(t, s.Stats().Bytes, int64(cfg.MaxBytes))
	ids, _ := drain(t, s)
	require.Len(t, ids, ok)
}

func TestFull_DropOldestDeletesTheOldestSegmentAndCountsIt(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 16 << 10
	cfg.WhenFull = WhenFullDropOldest
	s := open(t, cfg)
	// The reader holds the first entry, unacked, when its segment goes.
	first, err := s.Append(t.Context(), payload(0, 300))
	require.NoError(t, err)
	id, _, err := s.Next(t.Context())
	require.NoError(t, err)
	require.Equal(t, first, id)
	var last ID
	for i := 1; i < 200; i++ {
		last, err = s.Append(t.Context(), payload(uint64(i), 300))
		require.NoError(t, err)
		require.LessOrEqual(t, s.Stats().Bytes, int64(cfg.MaxBytes))
	}
	st := s.Stats()
	require.Positive(t, st.DroppedOldest)
	require.Zero(t, st.DroppedNewest)
	require.NoError(t, s.Ack(first), "acking a dropped entry is not an error")
	require.Zero(t, openDeleted(t, cfg.Dir), "no descriptor keeps a dropped segment's blocks")
	ids, _ := drain(t, s)
	require.Equal(t, last, ids[len(ids)-1], "the newest are kept")
	require.Equal(t, uint64(200), uint64(len(ids))+st.DroppedOldest, "each entry is either kept or counted")
	for i := 1; i < len(ids); i++ {
		require.Equal(t, ids[i-1]+1, ids[i], "what is kept is a contiguous newest run")
	}
}

func TestFull_FreeDiskFloorActsAsFull(t *testing.T) {
	cfg := testConfig(t)
	cfg.WhenFull = WhenFullDropNewest
	cfg.MinFreeBytes = 100 << 20
	fs := &faultFS{fs: osFS{}, free: 100<<20 + 2000}
	s := open(t, cfg, Settings{fs: fs})
	var n int
	for i := range 20 {
		if _, err := s.Append(t.Context(), payload(uint64(i), 300)); err != nil {
			require.ErrorIs(t, err, ErrFull)
			require.Contains(t, err.Error(), "min_free_bytes")
			break
		}
		n++
	}
	require.Less(t, n, 7, "stops within the 2000 bytes above the floor")
	require.Positive(t, n)
	fs.set(func(f *faultFS) { f.free = 1 << 40 })
	require.NoError(t, s.measureFree())
	_, err := s.Append(t.Context(), payload(99, 300))
	require.NoError(t, err)
}

func TestFull_DropOldestFirstDeletesWhatAcksFinished(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 16 << 10
	cfg.WhenFull = WhenFullDropOldest
	for round := range 20 { // the maintainer may or may not be first
		dir := cfg.Dir
		cfg.Dir = t.TempDir()
		s := open(t, cfg)
		var ids []ID // fill until the next append would not fit
		for s.Stats().Bytes+2*(300+frameHeaderSize)+sealFrameSize <= int64(cfg.MaxBytes) {
			ids = append(ids, fill(t, s, 1, 300)...)
		}
		require.Zero(t, s.Stats().DroppedOldest)
		for _, id := range ids[:12] { // exactly the first segment
			require.NoError(t, s.Ack(id))
		}
		for range 4 {
			_, err := s.Append(t.Context(), payload(0, 300))
			require.NoError(t, err)
		}
		require.Zero(t, s.Stats().DroppedOldest, "round %d: dropped entries while a finished segment was waiting for deletion", round)
		require.NoError(t, s.Close())
		cfg.Dir = dir
	}
}

func TestDiskFull_AckWritesFailAndRetryWithoutLosingAlignment(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 10, 100)
	drain(t, s)
	require.NoError(t, s.Ack(ids[0]))
	require.NoError(t, s.Sync())       // the ack file exists
	for _, i := range []int{1, 6, 3} { // three records: the failed write stops mid-record
		require.NoError(t, s.Ack(ids[i]))
	}
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	require.ErrorIs(t, s.Sync(), syscall.ENOSPC)
	fs.set(func(f *faultFS) { f.writeErr = nil })
	require.NoError(t, s.Sync(), "the acks are written on the next try")
	for _, i := range []int{2, 4, 7, 8, 9} {
		require.NoError(t, s.Ack(ids[i]))
	}
	require.NoError(t, s.Sync())
	s.crash()

	_, _, got := readAll(t, cfg)
	require.Equal(t, []ID{ids[5]}, got, "every ack survived, none misread")
}

// openDeleted counts this process's descriptors on deleted files in dir.
func openDeleted(t *testing.T, dir string) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc")
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(target, dir) && strings.HasSuffix(target, " (deleted)") {
			n++
		}
	}
	return n
}

// when_full block: everything is acknowledged, but the acknowledged entries
// are in the active segment, which only a roll frees. The append that needs
// their room rolls it rather than wait forever.
func TestFull_BlockedAppendProceedsWhenEverythingIsAcked(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 8 << 10
	s := open(t, cfg)
	ids := fill(t, s, 4, 900)
	got, _ := drain(t, s)
	require.Equal(t, ids, got)
	for _, id := range ids {
		require.NoError(t, s.Ack(id))
	}
	require.NoError(t, s.Sync())
	require.Zero(t, s.Stats().Entries)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err := s.Append(ctx, payload(4, 5000)) // fits in an empty segment and under max_bytes
	require.NoError(t, err, "stats: %+v", s.Stats())
}

// The same when the acks come while the append waits: the ack that finishes
// the active segment wakes it.
func TestFull_BlockedAppendWakesWhenTheActiveSegmentIsAllAcked(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 8 << 10
	s := open(t, cfg)
	ids := fill(t, s, 4, 900)
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), payload(4, 5000))
		done <- err
	}()
	waitBlocked(t, s, 1)
	got, _ := drain(t, s)
	require.Equal(t, ids, got)
	for _, id := range ids {
		require.NoError(t, s.Ack(id))
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("append still blocked; stats: %+v", s.Stats())
	}
}

// An entry that could never fit under max_bytes is refused at once rather
// than waiting forever: Open lowers max_entry_bytes to what fits.
func TestFull_MaxEntryBytesIsLoweredToWhatFitsUnderMaxBytes(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.MaxBytes = 8 << 10
	cfg.MaxEntryBytes = 1 << 20
	require.NoError(t, cfg.Validate())
	s := open(t, cfg)
	fit := int(maxFitEntry(cfg))
	_, err := s.Append(t.Context(), make([]byte, fit+1))
	require.ErrorIs(t, err, ErrTooLarge)
	id, err := s.Append(t.Context(), payload(0, fit))
	require.NoError(t, err)
	got, data := drain(t, s)
	require.Equal(t, []ID{id}, got)
	require.Equal(t, payload(0, fit), data[0])
	require.LessOrEqual(t, s.Stats().Bytes, int64(cfg.MaxBytes))
}

// A first ack-file write whose fsync fails leaves a file that ackSize does
// not count; it goes with its segment all the same.
func TestDiskFull_AckFileLeftByAFailedFirstWriteGoesWithItsSegment(t *testing.T) {
	cfg := testConfig(t)
	fs := &ioFaultFS{}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 5, 4000) // the 5th rolls: segment 1 holds ids[:4]
	require.NoError(t, s.Sync())
	drain(t, s)
	for _, id := range ids[:3] {
		require.NoError(t, s.Ack(id))
	}
	fs.failSync.Store(fs.syncs.Load() + 1) // the ack file's fsync
	require.ErrorIs(t, s.Sync(), syscall.EIO)
	require.Nil(t, s.failure(), "an ack file's fsync costs duplicates at worst")
	ack := filepath.Join(cfg.Dir, ackName(ids[0]))
	require.FileExists(t, ack)
	require.NoError(t, s.Ack(ids[3])) // segment 1 is done
	s.deleteDone()
	require.NoFileExists(t, filepath.Join(cfg.Dir, segName(ids[0])))
	require.NoFileExists(t, ack)
}

// While ack writes keep failing, the acks wait in the bitmap, not in a queue
// that grows with each one; the next write that works records them all.
func TestDiskFull_AcksDoNotQueueUpWhileAckWritesFail(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 100, 10)
	drain(t, s)
	require.NoError(t, s.Ack(ids[0]))
	require.NoError(t, s.Sync()) // the ack file exists
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	for round := range 3 {
		for i := 1 + round; i < len(ids); i += 3 { // out of order: one range each
			require.NoError(t, s.Ack(ids[i]))
		}
		require.ErrorIs(t, s.Sync(), syscall.ENOSPC)
		s.mu.Lock()
		pending := len(s.segs[0].pending)
		s.mu.Unlock()
		require.Zero(t, pending, "round %d", round)
	}
	fs.set(func(f *faultFS) { f.writeErr = nil })
	require.NoError(t, s.Sync())
	s.crash()

	_, _, got := readAll(t, cfg)
	require.Empty(t, got, "every ack survived")
}
