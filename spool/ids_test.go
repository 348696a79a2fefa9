package spool

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The newest segment file is what carries IDs across restarts. A roll must
// not retire the old, fully acknowledged segment before the new one exists:
// if creating it fails (ENOSPC), the directory would hold no segment and IDs
// would start again at 1.
func TestIDs_FailedRollDoesNotResetIDs(t *testing.T) {
	cfg := testConfig(t)
	cfg.WhenFull = WhenFullDropNewest
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 4, 4000)
	got, _ := drain(t, s)
	require.Equal(t, ids, got)
	for _, id := range ids {
		require.NoError(t, s.Ack(id))
	}
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := s.Append(ctx, payload(4, 4000)) // must roll
	require.Error(t, err)
	fs.set(func(f *faultFS) { f.writeErr = nil })
	_ = s.Close()
	require.NotEmpty(t, segFiles(t, cfg.Dir))

	s2 := open(t, cfg)
	id, err := s2.Append(t.Context(), []byte("after restart"))
	require.NoError(t, err)
	require.Greater(t, id, ids[3], "ID reused after restart")
}

// The same with drop_oldest: the only segment is not dropped unless a newer
// one can be started; the append is refused instead.
func TestIDs_DropOldestKeepsTheOnlySegmentWhenNoNewOneCanStart(t *testing.T) {
	cfg := testConfig(t)
	cfg.WhenFull = WhenFullDropOldest
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 4, 4000)
	fs.set(func(f *faultFS) { f.writeErr = syscall.ENOSPC })
	_, err := s.Append(t.Context(), payload(4, 4000)) // must roll
	require.ErrorIs(t, err, ErrFull)
	require.Zero(t, s.Stats().DroppedOldest)
	fs.set(func(f *faultFS) { f.writeErr = nil })
	_ = s.Close()

	s2, _, got := readAll(t, cfg)
	require.Equal(t, ids, got, "nothing dropped")
	id, err := s2.Append(t.Context(), []byte("after restart"))
	require.NoError(t, err)
	require.Greater(t, id, ids[3], "ID reused after restart")
}
