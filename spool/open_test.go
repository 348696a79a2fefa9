package spool

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A read error (EIO) at Open is an I/O error, not corruption: Open fails and
// leaves the files alone. Moving the newest segment aside would lose its
// entries and hand its IDs out again.
func TestOpen_ReadErrorDoesNotReuseIDs(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 5, 100)
	require.NoError(t, s.Close())

	fs := &ioFaultFS{}
	fs.readErr.Store(true)
	_, err := Open(cfg, Settings{fs: fs, Logger: s.log})
	require.ErrorIs(t, err, syscall.EIO)
	matches, err := filepath.Glob(filepath.Join(cfg.Dir, "*.corrupt"))
	require.NoError(t, err)
	require.Empty(t, matches, "a healthy segment moved aside")

	s2, _, got := readAll(t, cfg) // the error has cleared
	require.Equal(t, ids, got)
	id, err := s2.Append(t.Context(), []byte("new"))
	require.NoError(t, err)
	require.Greater(t, id, ids[4], "IDs reused")
	require.Zero(t, s2.Stats().CorruptSegments)
}

// The same for an ack file: a read error fails Open instead of discarding
// the acknowledgements (which would deliver acknowledged entries again).
func TestOpen_AckFileReadErrorFailsOpen(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 5, 100)
	drain(t, s)
	require.NoError(t, s.Ack(ids[0]))
	require.NoError(t, s.Close())
	ack := filepath.Join(cfg.Dir, ackName(ids[0]))
	require.FileExists(t, ack)

	fs := &ackReadErrFS{}
	_, err := Open(cfg, Settings{fs: fs})
	require.ErrorIs(t, err, syscall.EIO)
	require.FileExists(t, ack)

	_, _, got := readAll(t, cfg)
	require.Equal(t, ids[1:], got)
}

// ackReadErrFS fails every read of an ack file with EIO.
type ackReadErrFS struct{ osFS }

func (a *ackReadErrFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := a.osFS.OpenFile(name, flag, perm)
	if err != nil || filepath.Ext(name) != ".ack" {
		return f, err
	}
	fs := &ioFaultFS{}
	fs.readErr.Store(true)
	return &ioFaultFile{file: f, fs: fs, name: name}, nil
}
