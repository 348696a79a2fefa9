package spool

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// slowSyncFS makes the fsync of one file wait for a gate, as a slow disk
// writing back a whole segment would.
type slowSyncFS struct {
	osFS
	slow atomic.Value // string: base name of the file whose Sync waits
	gate chan struct{}
}

func (fs *slowSyncFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := fs.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &slowSyncFile{file: f, fs: fs, name: filepath.Base(name)}, nil
}

type slowSyncFile struct {
	file
	fs   *slowSyncFS
	name string
}

func (f *slowSyncFile) Sync() error {
	if slow, _ := f.fs.slow.Load().(string); slow == f.name {
		<-f.fs.gate
	}
	return f.file.Sync()
}

// Sealing a segment does not make the append that rolled it wait for the
// segment's fsync (up to a sync_interval of data, or a whole segment): the
// syncer does it. Durable covers the segment only once it is done.
func TestSeal_FsyncIsOffTheAppendPath(t *testing.T) {
	fs := &slowSyncFS{gate: make(chan struct{})}
	fs.slow.Store("")
	cfg := testConfig(t) // 16 KiB segments, sync interval of an hour
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 3, 4000)
	s.mu.Lock()
	firstSeg := filepath.Base(s.segs[0].path)
	s.mu.Unlock()
	fs.slow.Store(firstSeg)
	released := false
	release := func() {
		if !released {
			released = true
			close(fs.gate)
		}
	}
	t.Cleanup(release)

	done := make(chan []ID, 1)
	go func() {
		var more []ID
		for i := range 3 { // the second one rolls the segment
			id, err := s.Append(context.Background(), payload(uint64(100+i), 4000))
			if err != nil {
				break
			}
			more = append(more, id)
		}
		done <- more
	}()
	var more []ID
	select {
	case more = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("an append waited for the fsync of the segment it sealed")
	}
	require.Len(t, more, 3)
	s.mu.Lock()
	require.Greater(t, len(s.segs), 1, "the segment rolled")
	require.True(t, s.segs[0].sealed)
	sealedLast := s.segs[0].last
	s.mu.Unlock()
	require.Less(t, s.Durable(), ids[0], "durable before its fsync")

	release()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, s.WaitDurable(ctx, sealedLast), "the syncer makes the sealed segment durable")
	require.NoError(t, s.Sync())
	require.GreaterOrEqual(t, s.Durable(), more[len(more)-1])
}
