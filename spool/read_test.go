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

// Rewind hands out again what was read and not acknowledged, and skips what
// was acknowledged, in ID order, across segments, and new entries follow.
func TestRead_RewindHandsOutUnacknowledgedEntriesAgain(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 400, 100)
	require.Greater(t, s.Stats().Segments, int64(1), "the test wants entries across segments")
	got, _ := drain(t, s)
	require.Equal(t, ids, got)
	var want []ID
	for i, id := range ids {
		if i%3 == 0 {
			require.NoError(t, s.Ack(id))
			continue
		}
		want = append(want, id)
	}
	s.Rewind()
	got, _ = drain(t, s)
	require.Equal(t, want, got, "the unacknowledged entries, once each")
	_, _, ok, err := s.TryNext(nil)
	require.NoError(t, err)
	require.False(t, ok, "nothing more until an append")
	more := fill(t, s, 2, 100)
	got, _ = drain(t, s)
	require.Equal(t, more, got)
	require.NoError(t, s.Close())
	s.Rewind() // after Close: nothing to do
}
