package crashfs

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCrashFS_SyncedContentAndEntriesSurvive(t *testing.T) {
	for seed := range uint64(200) {
		f := New(seed)
		require.NoError(t, f.MkdirAll("/d", 0o700))
		fl, err := f.OpenFile("/d/a", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
		require.NoError(t, err)
		_, err = fl.Write([]byte("hello "))
		require.NoError(t, err)
		require.NoError(t, fl.Sync())
		require.NoError(t, f.SyncDir("/d"))
		_, err = fl.Write([]byte("world"))
		require.NoError(t, err)
		f.Restart()

		got, err := f.ReadFile("/d/a")
		require.NoError(t, err, "seed %d", seed)
		require.True(t, bytes.HasPrefix(got, []byte("hello ")), "seed %d: %q", seed, got)
		require.LessOrEqual(t, len(got), len("hello world"))
		tail := got[len("hello "):]
		// A torn write keeps a prefix, maybe followed by zeros.
		trimmed := bytes.TrimRight(tail, "\x00")
		require.True(t, bytes.HasPrefix([]byte("world"), trimmed), "seed %d: tail %q", seed, tail)
		_, err = fl.Write([]byte("x"))
		require.ErrorIs(t, err, syscall.EIO, "handles from before the restart are dead")
	}
}

func TestCrashFS_UnsyncedEntriesMayVanishOrComeBack(t *testing.T) {
	var vanished, kept, back, gone int
	for seed := range uint64(200) {
		f := New(seed)
		require.NoError(t, f.MkdirAll("/d", 0o700))
		old, err := f.OpenFile("/d/old", os.O_RDWR|os.O_CREATE, 0o600)
		require.NoError(t, err)
		require.NoError(t, old.Sync())
		require.NoError(t, f.SyncDir("/d"))
		nf, err := f.OpenFile("/d/new", os.O_RDWR|os.O_CREATE, 0o600)
		require.NoError(t, err)
		require.NoError(t, nf.Sync())
		require.NoError(t, f.Remove("/d/old"))
		f.Restart()
		if _, err := f.ReadFile("/d/new"); err == nil {
			kept++
		} else {
			vanished++
		}
		if _, err := f.ReadFile("/d/old"); err == nil {
			back++
		} else {
			gone++
		}
	}
	require.Positive(t, vanished)
	require.Positive(t, kept)
	require.Positive(t, back)
	require.Positive(t, gone)
}

func TestCrashFS_CutFailsEveryOperationFromThenOn(t *testing.T) {
	f := New(1)
	require.NoError(t, f.MkdirAll("/d", 0o700))
	fl, err := f.OpenFile("/d/a", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600) // op 1
	require.NoError(t, err)
	f.Cut(2)                       // the second operation from now finds the power off
	_, err = fl.Write([]byte("a")) // op 2
	require.NoError(t, err)
	_, err = fl.Write([]byte("b")) // op 3: the power is off
	require.True(t, errors.Is(err, syscall.EIO))
	require.True(t, f.Off())
	_, err = fl.ReadAt(make([]byte, 1), 0)
	require.ErrorIs(t, err, syscall.EIO)
	f.Restart()
	require.False(t, f.Off())
}
