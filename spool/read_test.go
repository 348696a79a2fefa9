package spool

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A transient read error (EIO) on a sealed segment is not corruption: it is
// returned to the reader, nothing is marked lost, and the entries come
// again, on the next read as after a restart.
func TestRead_TransientErrorDoesNotLoseEntries(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 5, 100)
	require.NoError(t, s.Close()) // sealed

	fs := &ioFaultFS{}
	s = open(t, cfg, Settings{fs: fs})
	fs.readErr.Store(true)
	_, _, ok, err := s.TryNext(nil)
	require.ErrorIs(t, err, syscall.EIO)
	require.False(t, ok)
	require.Zero(t, s.Stats().CorruptEntries)
	fs.readErr.Store(false)
	got, _ := drain(t, s)
	require.Equal(t, ids, got, "the next read starts where the failed one did")
	require.NoError(t, s.Close())

	_, _, got = readAll(t, cfg)
	require.Equal(t, ids, got, "unacknowledged entries lost to a read error")
}
