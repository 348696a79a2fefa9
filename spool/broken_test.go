package spool

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A write that fails after writing part of a frame into a fresh, empty
// active segment, and a truncate that cannot cut the partial frame off
// again, leave that segment broken. Rolling it used to create a file of
// the same name (the segment starts at the next ID): EEXIST at every
// attempt, so the spool never wrote again (the synchronous path returned
// the error to every Append; the writer retried for ever with the entries
// staged). The empty segment is repaired instead: cut again, or, when the
// truncate keeps failing, replaced by a clean file under the same name.
func TestBroken_EmptyActiveSegmentIsRepaired(t *testing.T) {
	for _, tc := range []struct {
		name        string
		wb          bool
		truncStays  bool // the truncate keeps failing: the file is replaced
		readerFirst bool // a reader has the segment open before the repair
	}{
		{name: "sync/truncate_again", truncStays: false},
		{name: "sync/replace", truncStays: true, readerFirst: true},
		{name: "write_behind/truncate_again", wb: true},
		{name: "write_behind/replace", wb: true, truncStays: true, readerFirst: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			fs := &faultFS{fs: osFS{}}
			var s *Spool
			if tc.wb {
				s = openWB(t, cfg, Settings{fs: fs})
			} else {
				s = open(t, cfg, Settings{fs: fs})
			}
			// A segment full of entries, all acknowledged, then a roll: the
			// active segment is empty and the only file naming the next ID
			// once the finished one is deleted.
			ids := fill(t, s, 5, 3000)
			require.NoError(t, s.Sync()) // written (write-behind)
			got, _ := drain(t, s)
			require.Equal(t, ids, got)
			for _, id := range ids {
				require.NoError(t, s.Ack(id))
			}
			s.fmu.Lock()
			err := s.rollLocked()
			s.fmu.Unlock()
			require.NoError(t, err)
			require.NoError(t, s.Sync())
			require.EqualValues(t, 1, s.Stats().Segments, "the finished segment is deleted")
			if tc.readerFirst {
				_, _, ok, err := s.TryNext(nil) // the reader opens the empty segment
				require.NoError(t, err)
				require.False(t, ok)
				s.rmu.Lock()
				g := s.rd.g
				s.rmu.Unlock()
				require.NotNil(t, g)
			}

			fs.set(func(f *faultFS) { f.writeErr = syscall.EIO; f.truncErr = syscall.EIO })
			var first ID
			if tc.wb {
				id, err := s.Append(t.Context(), payload(uint64(len(ids)), 300))
				require.NoError(t, err, "accepted: the writer has not failed yet")
				first = id
				waitFor(t, "the writer's write fails", func() bool { return s.Stats().WriteErrors > 0 })
			} else {
				_, err := s.Append(t.Context(), payload(uint64(len(ids)), 300))
				require.ErrorIs(t, err, syscall.EIO)
			}
			s.fmu.Lock()
			broken := s.broken
			s.fmu.Unlock()
			require.True(t, broken, "the partial frame could not be cut off")

			fs.set(func(f *faultFS) {
				f.writeErr = nil
				if !tc.truncStays {
					f.truncErr = nil
				}
			})
			var more []ID
			if tc.wb {
				more = append(more, first)
				deadline := time.Now().Add(10 * time.Second)
				for s.Stats().Staged > 0 {
					require.True(t, time.Now().Before(deadline), "the writer never wrote the staged entry again: %+v", s.Stats())
					time.Sleep(5 * time.Millisecond)
				}
			}
			for i := range 3 {
				id, err := s.Append(t.Context(), payload(uint64(len(ids)+len(more)), 300))
				require.NoError(t, err, "append %d after the failure", i)
				more = append(more, id)
			}
			require.Equal(t, ids[len(ids)-1]+1, more[0], "no ID skipped or handed out twice")
			require.NoError(t, s.Sync())
			if tc.readerFirst {
				got, _ := drain(t, s)
				require.Equal(t, more, got, "the reader that had the segment open reads the new entries")
			}
			require.NoError(t, s.Close())

			fs.set(func(f *faultFS) { f.truncErr = nil })
			s2, _, all := readAll(t, cfg)
			require.Equal(t, more, all)
			require.Zero(t, s2.Stats().CorruptEntries)
			des, err := os.ReadDir(cfg.Dir)
			require.NoError(t, err)
			for _, de := range des {
				require.NotContains(t, de.Name(), ".tmp")
			}
		})
	}
}

// The ID sequence survives a crash at any point of the repair: the segment
// file that names the next ID is there before (with the partial frame,
// cut at Open), after (clean), and in between (a temporary file left
// beside it is removed at Open).
func TestBroken_RepairKeepsTheIDSequenceAcrossACrash(t *testing.T) {
	cfg := testConfig(t)
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	ids := fill(t, s, 5, 3000)
	for _, id := range ids {
		require.NoError(t, s.Ack(id))
	}
	s.fmu.Lock()
	err := s.rollLocked()
	s.fmu.Unlock()
	require.NoError(t, err)
	require.NoError(t, s.Sync())
	next := ids[len(ids)-1] + 1

	fs.set(func(f *faultFS) { f.writeErr = syscall.EIO; f.truncErr = syscall.EIO })
	_, err = s.Append(t.Context(), payload(5, 300))
	require.ErrorIs(t, err, syscall.EIO)
	before := copyDir(t, cfg.Dir) // the broken segment, partial frame and all
	// In the middle: the clean file written beside it, not yet renamed.
	mid := copyDir(t, cfg.Dir)
	name := segName(next)
	hdr := segHeader{first: next, salt: 7}.encode()
	require.NoError(t, os.WriteFile(filepath.Join(mid, name+".tmp"), hdr[:], 0o600))

	fs.set(func(f *faultFS) { f.writeErr = nil })
	s.fmu.Lock()
	err = s.rollLocked()
	s.fmu.Unlock()
	require.NoError(t, err, "the repair")
	after := copyDir(t, cfg.Dir)
	require.NoError(t, s.Close())

	for _, dir := range []string{before, mid, after} {
		c := cfg
		c.Dir = dir
		s := open(t, c)
		id, err := s.Append(t.Context(), payload(uint64(next-1), 300))
		require.NoError(t, err)
		require.Equal(t, next, id, "IDs go on after a crash (%s)", dir)
		require.NoError(t, s.Close())
		_, err = os.Stat(filepath.Join(dir, name+".tmp"))
		require.ErrorIs(t, err, os.ErrNotExist)
	}
}

// A last segment that is empty and sealed (the format allows it; this
// version never writes one) is where the next entries go: Open used to
// create a new segment of the same name next to it and failed with EEXIST,
// at every start.
func TestRecover_SealedEmptyLastSegmentBecomesActive(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 3, 100)
	require.NoError(t, s.Close())
	next := ids[len(ids)-1] + 1
	h := segHeader{first: next, salt: 42}
	hb := h.encode()
	b := appendSeal(hb[:], h, next-1, segHeaderSize)
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Dir, segName(next)), b, 0o600))

	s = open(t, cfg)
	id, err := s.Append(t.Context(), payload(uint64(next-1), 100))
	require.NoError(t, err)
	require.Equal(t, next, id)
	require.NoError(t, s.Close())
	_, _, all := readAll(t, cfg)
	require.Equal(t, append(ids, next), all)
}
