package spool

import (
	"errors"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// openTrackFS counts the files the spool holds open, by path.
type openTrackFS struct {
	fileSystem
	mu   sync.Mutex
	open map[string]int
}

func (o *openTrackFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := o.fileSystem.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	o.open[name]++
	o.mu.Unlock()
	return &trackedFile{file: f, fs: o, name: name}, nil
}

// deletedHeld lists the files held open that no longer exist: their blocks
// stay allocated until they are closed.
func (o *openTrackFS) deletedHeld() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var held []string
	for name, n := range o.open {
		if _, err := os.Stat(name); n > 0 && errors.Is(err, os.ErrNotExist) {
			held = append(held, name)
		}
	}
	sort.Strings(held)
	return held
}

type trackedFile struct {
	file
	fs     *openTrackFS
	name   string
	closed sync.Once
}

func (f *trackedFile) Close() error {
	f.closed.Do(func() {
		f.fs.mu.Lock()
		f.fs.open[f.name]--
		f.fs.mu.Unlock()
	})
	return f.file.Close()
}

// A segment deleted once everything in it was acknowledged must give its
// disk space back: nothing may keep its file open. On a small file system
// (free space below min_free_bytes) the segment that a roll retires is the
// only thing using the space; the writer's sealed file (its entries were
// already synced, so no sync round closed it) and the reader's cursor (it
// had caught up at the segment's end and waited for entries that never
// came) held it, the free space never came back, and appends waited for
// room forever: agent tail on a 3 MiB tmpfs hung with everything delivered.
func TestSpool_DeletedSegmentIsNotHeldOpen(t *testing.T) {
	for _, wb := range []bool{false, true} {
		name := map[bool]string{false: "direct writes", true: "write-behind"}[wb]
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.SyncInterval = 5 * time.Millisecond
			cfg.MinFreeBytes = 1 << 20
			cfg.WhenFull = WhenFullDropNewest
			ffs := &faultFS{fs: osFS{}}
			ffs.set(func(f *faultFS) { f.free = 1 << 30 })
			tfs := &openTrackFS{fileSystem: ffs, open: map[string]int{}}
			var s *Spool
			if wb {
				s = openWB(t, cfg, Settings{fs: tfs})
			} else {
				s = open(t, cfg, Settings{fs: tfs})
			}
			var ids []ID
			for i := range 10 {
				id, err := s.Append(t.Context(), payload(uint64(i), 500))
				require.NoError(t, err)
				ids = append(ids, id)
			}
			require.NoError(t, s.Sync())
			for range ids {
				id, _, err := s.Next(t.Context())
				require.NoError(t, err)
				require.NoError(t, s.Ack(id))
			}
			_, ok := func() (ID, bool) { id, _, ok, _ := s.TryNext(nil); return id, ok }()
			require.False(t, ok, "the reader caught up with the writer")
			require.NoError(t, s.Sync())

			// The disk fills up (another program): the next append finds
			// no room, rolls the finished segment away and deletes it.
			ffs.set(func(f *faultFS) { f.free = 1 << 10 })
			require.NoError(t, s.measureFree())
			_, err := s.Append(t.Context(), payload(99, 500))
			require.ErrorIs(t, err, ErrFull)

			deadline := time.Now().Add(5 * time.Second)
			for len(tfs.deletedHeld()) > 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			require.Empty(t, tfs.deletedHeld(), "deleted segment files still open: their space never comes back")
		})
	}
}
