package file

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A named pipe created under a followed pattern while the source runs is
// not a file to follow: it must not be opened in a way that blocks (open(2)
// of a FIFO waits for a writer). Events keep coming (a file created after
// it is found without a scan) and Run returns promptly on cancel (shutdown
// waits for the event goroutine).
func TestDiscovery_FifoDoesNotBlockEventsOrShutdown(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir, "*.log")
	cfg.ScanInterval = time.Hour // found through events only
	r := start(t, cfg, Settings{})
	time.Sleep(200 * time.Millisecond) // watches in place
	fifo := filepath.Join(dir, "pipe.log")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	time.Sleep(100 * time.Millisecond)
	writeFile(t, filepath.Join(dir, "a.log"), "after the fifo\n")
	deadline := time.Now().Add(2 * time.Second)
	for r.col.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	gotLine := r.col.count() > 0
	r.stop()
	var hung bool
	select {
	case <-r.done:
	case <-time.After(2 * time.Second):
		hung = true
	}
	if hung {
		// Unblock the open so the goroutines end.
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		require.NoError(t, err)
		_ = w.Close()
		<-r.done
	}
	close(r.done)
	require.False(t, hung, "Run did not return within 2s of cancel: blocked opening a FIFO")
	require.True(t, gotLine, "a file created after the FIFO was not found through events")
	require.Equal(t, []string{"after the fifo"}, r.col.lines())
}

// openRegular opens regular files (blocking, as os.Open would) and refuses
// at once what is not one.
func TestOpenRegular_RefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.log")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	for _, p := range []string{fifo, dir} {
		fd, err := openRegular(p)
		require.ErrorIs(t, err, errNotRegular, p)
		require.Nil(t, fd)
	}
	_, err := openRegular(filepath.Join(dir, "missing.log"))
	require.ErrorIs(t, err, os.ErrNotExist)

	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "line\n")
	fd, err := openRegular(p)
	require.NoError(t, err)
	defer fd.Close()
	flags, err := unix.FcntlInt(fd.Fd(), unix.F_GETFL, 0)
	require.NoError(t, err)
	require.Zero(t, flags&unix.O_NONBLOCK, "O_NONBLOCK is cleared")
	b := make([]byte, 16)
	n, err := fd.Read(b)
	require.NoError(t, err)
	require.Equal(t, "line\n", string(b[:n]))
}
