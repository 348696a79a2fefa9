package spool

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// ioFaultFS wraps osFS: ReadAt can be made to fail with EIO, Syncs are
// recorded by path, and the n-th Sync can be made to wait on a gate and fail.
type ioFaultFS struct {
	osFS
	readErr  atomic.Bool
	mu       sync.Mutex
	synced   []string
	syncs    atomic.Int64
	failSync atomic.Int64  // the Sync with this number fails with EIO
	gate     chan struct{} // ... after waiting for this to be closed
}

func (r *ioFaultFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := r.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &ioFaultFile{file: f, fs: r, name: name}, nil
}

type ioFaultFile struct {
	file
	fs   *ioFaultFS
	name string
}

func (f *ioFaultFile) ReadAt(b []byte, off int64) (int, error) {
	if f.fs.readErr.Load() {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: syscall.EIO}
	}
	return f.file.ReadAt(b, off)
}

func (f *ioFaultFile) Sync() error {
	n := f.fs.syncs.Add(1)
	if n == f.fs.failSync.Load() {
		if f.fs.gate != nil {
			<-f.fs.gate
		}
		return &os.PathError{Op: "fdatasync", Path: f.name, Err: syscall.EIO}
	}
	f.fs.mu.Lock()
	f.fs.synced = append(f.fs.synced, filepath.Base(f.name))
	f.fs.mu.Unlock()
	return f.file.Sync()
}

func (r *ioFaultFS) syncedFiles() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.synced...)
}

// copyDir copies the spool's files (not the lock) to a new directory: what a
// kill -9 leaves is what the files hold now.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	des, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, de := range des {
		if de.Name() == lockName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, de.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(to, de.Name()), b, 0o600))
	}
	return to
}
