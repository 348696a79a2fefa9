package spool

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// After a failed fsync nothing written before it may be called durable: Close's
// seal is a second fsync, which Linux reports as a success although the
// kernel may have dropped the pages the first one could not write.
func TestSync_FailedFsyncIsNeverMadeDurableByClose(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 5, 100)
	fs.set(func(f *faultFS) { f.syncErr = syscall.EIO })
	require.ErrorIs(t, s.Sync(), syscall.EIO)
	require.Less(t, s.Durable(), ids[4])
	fs.set(func(f *faultFS) { f.syncErr = nil }) // the next fsync "succeeds"
	require.Error(t, s.Close())
	require.Less(t, s.Durable(), ids[4], "Durable moved past entries whose fsync failed")
}

// The same while running: an append that rolls the segment while the
// interval fsync is failing does not wait for the disk (the seal hands the
// file to the syncer; regression: the roll held the source for as long as
// an fsync took), and neither that fsync's failure nor any later round
// moves Durable over the failed entries or the new one (the agent would
// checkpoint past them); appends are refused from then on.
func TestSync_FailedFsyncIsNeverMadeDurableByASeal(t *testing.T) {
	cfg := testConfig(t)
	fs := &ioFaultFS{gate: make(chan struct{})}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 4, 4000) // the 5th entry of this size rolls
	require.Len(t, segFiles(t, cfg.Dir), 1)
	fs.failSync.Store(fs.syncs.Load() + 1)
	syncDone := make(chan error, 1)
	go func() { syncDone <- s.Sync() }() // a round held in a failing fsync
	for deadline := time.Now().Add(10 * time.Second); fs.syncs.Load() < fs.failSync.Load(); {
		require.True(t, time.Now().Before(deadline), "the fsync never started")
		time.Sleep(time.Millisecond)
	}
	appendDone := make(chan error, 1)
	var rolled ID
	go func() {
		id, err := s.Append(context.Background(), payload(4, 4000))
		rolled = id
		appendDone <- err
	}()
	select {
	case err := <-appendDone:
		require.NoError(t, err, "the fsync has not failed yet")
	case <-time.After(10 * time.Second):
		close(fs.gate)
		t.Fatal("the append that rolls waited for an fsync in progress")
	}
	require.Len(t, segFiles(t, cfg.Dir), 2)
	close(fs.gate)
	require.ErrorIs(t, <-syncDone, syscall.EIO)
	require.ErrorIs(t, s.Sync(), syscall.EIO, "a later round must not succeed")
	_, err := s.Append(context.Background(), payload(5, 10))
	require.ErrorIs(t, err, syscall.EIO, "appends are refused after a failed fsync")
	require.Less(t, s.Durable(), ids[3], "Durable moved past entries whose fsync failed")
	require.Less(t, s.Durable(), rolled)
}

// kill -9 between a seal's write and its fsync leaves a sealed segment whose
// entries were never fsynced. Open trusts it without a scan, but must fsync it
// before it reports its entries durable.
func TestRecover_SealedButUnsyncedSegmentIsSyncedBeforeDurable(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 4, 4000)
	require.Zero(t, s.Durable())
	seg := segFiles(t, cfg.Dir)[0]
	fi, err := os.Stat(seg)
	require.NoError(t, err)
	gate := make(chan struct{})
	fs.set(func(f *faultFS) { f.syncGate = gate })
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), payload(4, 4000)) // rolls: seal, then fsync
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		fi2, err := os.Stat(seg)
		require.NoError(t, err)
		if fi2.Size() == fi.Size()+sealFrameSize {
			break
		}
		require.True(t, time.Now().Before(deadline))
		time.Sleep(time.Millisecond)
	}
	dir2 := copyDir(t, cfg.Dir) // the state kill -9 leaves now: sealed, not fsynced
	close(gate)
	require.NoError(t, <-done)

	cfg2 := cfg
	cfg2.Dir = dir2
	rfs := &ioFaultFS{}
	s2 := open(t, cfg2, Settings{fs: rfs})
	if s2.Durable() >= ids[3] {
		require.Contains(t, rfs.syncedFiles(), segName(1),
			"Open reports ID %d durable without ever fsyncing its segment", ids[3])
	}
}

// Regression (found by TestPowerCut): with sync never, Sync skipped the
// fsync because Durable, which is the last appended ID under that policy,
// already covered every entry; a power cut after Sync returned could lose
// them (and the header of a new segment, which made it move aside).
func TestSync_SyncFsyncsUnderSyncNever(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = SyncNever
	fs := &ioFaultFS{}
	s := open(t, cfg, Settings{fs: fs})
	fill(t, s, 3, 100)
	before := fs.syncs.Load()
	require.NoError(t, s.Sync())
	require.Greater(t, fs.syncs.Load(), before, "Sync wrote nothing to stable storage")
	before = fs.syncs.Load()
	require.NoError(t, s.Sync())
	require.Equal(t, before, fs.syncs.Load(), "nothing new: no second fsync")
}

// Regression (found by TestPowerCut): a new segment's header was not
// fsynced, only its directory entry. After a roll or an Open had deleted the
// finished segment before it, a power cut could leave the new file empty;
// Open removed it and handed out again IDs that had been durable (and
// acknowledged).
func TestRoll_NewSegmentHeaderIsFsyncedWithItsEntry(t *testing.T) {
	cfg := testConfig(t)
	fs := &ioFaultFS{}
	s := open(t, cfg, Settings{fs: fs})
	fill(t, s, 2, 10000) // the second entry starts a new segment
	require.Len(t, segFiles(t, cfg.Dir), 2)
	require.Contains(t, fs.syncedFiles(), segName(2), "the new segment's header was never fsynced")
}
