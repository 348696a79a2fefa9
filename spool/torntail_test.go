package spool

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tornSpool leaves a spool in a fresh directory as a crash in the middle
// of an append does: n whole entries (none when n is 0), then tornBytes of
// a partial frame at the end of the last segment. It returns the config,
// the IDs of the whole entries and the torn segment's path.
func tornSpool(t *testing.T, n int) (Config, []ID, string, []byte) {
	t.Helper()
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, n, 300)
	s.crash()
	segs := segFiles(t, cfg.Dir)
	last := segs[len(segs)-1]
	next := ID(1)
	if n > 0 {
		next = ids[n-1] + 1
	} else {
		ids = nil // as drain returns none
	}
	p := payload(uint64(next-1), 300)
	var h [frameHeaderSize]byte
	putFrameHeader(h[:], 0, next, p)
	tail := append(h[:], p[:150]...)
	appendBytes(t, last, tail)
	return cfg, ids, last, tail
}

// A torn tail whose truncate the file system refuses (EPERM, EIO) failed
// Open, so the agent could not start. Open now replaces the segment with a
// clean copy of its whole entries, as the spool repairs a broken segment
// while it runs: every whole entry is kept, the tail is logged once at
// WARN and counted, and the next Open finds nothing to report.
func TestRecover_TornTailWhoseTruncateFailsIsReplaced(t *testing.T) {
	for _, n := range []int{20, 0} {
		t.Run("entries="+strconv.Itoa(n), func(t *testing.T) {
			cfg, ids, seg, tail := tornSpool(t, n)
			fs := &faultFS{fs: osFS{}, truncErr: syscall.EPERM}
			log, rec := newLog(t)
			s := open(t, cfg, Settings{fs: fs, Logger: log})
			got, data := drain(t, s)
			require.Equal(t, ids, got, "every whole entry is kept")
			for i, b := range data {
				seq, err := checkPayload(b)
				require.NoError(t, err)
				require.Equal(t, uint64(got[i]-1), seq)
			}
			st := s.Stats()
			require.Equal(t, uint64(1), st.TornTails)
			require.Equal(t, uint64(len(tail)), st.BytesLost)
			require.Equal(t, 1, rec.count(slog.LevelWarn, "torn tail"))
			require.Equal(t, seg, rec.attr(t, "torn tail", "segment"))
			require.Equal(t, strconv.Itoa(len(tail)), rec.attr(t, "torn tail", "bytes_cut"))
			require.Equal(t, cutReplaced, rec.attr(t, "torn tail", "how"))
			left, err := filepath.Glob(filepath.Join(cfg.Dir, "*"+tmpSuffix))
			require.NoError(t, err)
			require.Empty(t, left, "no temporary file is left")

			id, err := s.Append(t.Context(), payload(uint64(len(ids)), 10))
			require.NoError(t, err)
			require.Equal(t, ID(len(ids)+1), id, "IDs go on after the kept entries")
			require.NoError(t, s.Close())

			s, rec, all := readAll(t, cfg)
			require.Equal(t, append(ids, id), all)
			require.Zero(t, s.Stats().TornTails, "the tail is gone from the disk")
			require.Zero(t, rec.count(slog.LevelWarn, "spool: cut"))
		})
	}
}

// When the copy cannot replace the segment either (a directory that
// refuses writes), Open still comes up: it serves the whole entries, says
// why appends cannot be taken, and appends follow when_full (drop_newest:
// ErrFull naming the cause; block: they wait) until the directory takes
// writes again. Nothing is lost and the next Open cuts the tail.
func TestRecover_TornTailInADirectoryThatRefusesWritesStillOpens(t *testing.T) {
	for _, wf := range []WhenFull{WhenFullDropNewest, WhenFullBlock} {
		t.Run(string(wf), func(t *testing.T) {
			cfg, ids, seg, tail := tornSpool(t, 20)
			cfg.WhenFull = wf
			fs := &faultFS{fs: osFS{}, truncErr: syscall.EPERM, dirFault: syscall.EACCES}
			log, rec := newLog(t)
			// Appends write their frames themselves (sync: always): with the
			// write-behind an append after the refusal's backoff is staged
			// in memory while the writer retries (refused.go).
			s := open(t, cfg, Settings{fs: fs, Logger: log})
			got, _ := drain(t, s)
			require.Equal(t, ids, got, "the whole entries are served")
			require.Equal(t, uint64(1), s.Stats().TornTails)
			require.Equal(t, cutLeft, rec.attr(t, "torn tail", "how"))
			require.Equal(t, 1, rec.count(slog.LevelWarn, "refuses writes: opened to deliver the entries on disk"))
			fi, err := os.Stat(seg)
			require.NoError(t, err)
			require.Equal(t, int64(len(tail)), fi.Size()-frameEnd(t, seg), "the torn bytes are still there")

			switch wf {
			case WhenFullDropNewest:
				_, err := s.Append(t.Context(), payload(20, 300))
				require.ErrorIs(t, err, ErrFull)
				require.ErrorContains(t, err, "refuses writes")
			case WhenFullBlock:
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				_, err := s.Append(ctx, payload(20, 300))
				cancel()
				require.ErrorIs(t, err, context.DeadlineExceeded)
				require.ErrorContains(t, err, "refuses writes")
			}
			for _, id := range ids[:5] {
				require.NoError(t, s.Ack(id))
			}

			fs.set(func(f *faultFS) { f.dirFault = nil })
			var id ID
			waitFor(t, "an append once the directory takes writes", func() bool {
				id, err = s.Append(t.Context(), payload(20, 300))
				return err == nil
			})
			require.Equal(t, ids[len(ids)-1]+1, id)
			require.NoError(t, s.Close())

			fs.set(func(f *faultFS) { f.truncErr = nil })
			s, _, all := readAll(t, cfg)
			require.Equal(t, append(ids[5:], id), all, "acks kept, nothing lost")
			fi, err = os.Stat(seg)
			require.NoError(t, err)
			require.Equal(t, frameEnd(t, seg)+sealFrameSize, fi.Size(), "the tail is cut and the segment sealed")
			require.NoError(t, s.Close())
		})
	}
}

// frameEnd is where the last whole frame of a segment file ends.
func frameEnd(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	end := int64(segHeaderSize)
	for _, off := range frameOffsets(t, path) {
		if e := off + frameHeaderSize + int64(binary.LittleEndian.Uint32(b[off+4:])); e <= int64(len(b)) {
			end = e
		}
	}
	return end
}

// A torn tail left in place at Open (how=left: neither the truncate nor
// the copy could be made) is no longer the last segment at the following
// Open once appends went on in a new one. It is still a torn tail, not
// corruption: the next Open cuts it with a WARN about a torn tail, counts
// it in TornTails, and reports no lost entries and no ERROR.
func TestRecover_TornTailLeftInPlaceIsATornTailAtTheNextOpen(t *testing.T) {
	cfg, ids, seg, tail := tornSpool(t, 20)
	fs := &faultFS{fs: osFS{}, truncErr: syscall.EPERM, dirFault: syscall.EACCES}
	log, rec := newLog(t)
	s := open(t, cfg, Settings{fs: fs, Logger: log})
	require.Equal(t, cutLeft, rec.attr(t, "torn tail", "how"))
	fs.set(func(f *faultFS) { f.dirFault = nil })
	var id ID
	var err error
	waitFor(t, "an append once the directory takes writes", func() bool {
		id, err = s.Append(t.Context(), payload(20, 300))
		return err == nil
	})
	require.NoError(t, s.Close())
	segs := segFiles(t, cfg.Dir)
	require.Greater(t, len(segs), 1, "the append went to a new segment")
	require.NotEqual(t, seg, segs[len(segs)-1], "the torn segment is no longer the last")

	fs.set(func(f *faultFS) { f.truncErr = nil })
	log, rec = newLog(t)
	s = open(t, cfg, Settings{fs: fs, Logger: log})
	got, _ := drain(t, s)
	require.Equal(t, append(ids, id), got, "nothing lost")
	st := s.Stats()
	require.Equal(t, uint64(1), st.TornTails)
	require.Zero(t, st.CorruptEntries)
	require.Equal(t, uint64(len(tail)), st.BytesLost)
	require.Equal(t, 1, rec.count(slog.LevelWarn, "spool: cut a torn tail"))
	require.Equal(t, seg, rec.attr(t, "torn tail", "segment"))
	require.Zero(t, rec.count(slog.LevelError, "cut a corrupt or unsynced end"))
	require.NoError(t, s.Close())
}

// A segment followed by others whose end is cut inside an entry the next
// segment does not hold (its ID is missing) is corruption or a power loss
// before its fsync: an ERROR with the entries lost, not a torn tail.
func TestRecover_CutEndOfAnEarlierSegmentWithAMissingEntryIsAnError(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	s := open(t, cfg)
	fill(t, s, 40, 300)
	require.NoError(t, s.Close())
	segs := segFiles(t, cfg.Dir)
	require.Greater(t, len(segs), 2)
	offs := frameOffsets(t, segs[0])
	last := offs[len(offs)-1]
	require.NoError(t, os.Truncate(segs[0], last+frameHeaderSize+10)) // its last entry torn, and its seal gone

	_, rec, _ := readAll(t, cfg)
	require.Equal(t, 1, rec.count(slog.LevelError, "cut a corrupt or unsynced end"))
	require.Equal(t, "1", rec.attr(t, "cut a corrupt or unsynced end", "entries_lost"))
	require.Zero(t, rec.count(slog.LevelWarn, "torn tail"))
}
