package spool

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// segFiles lists the segment files of dir, oldest first.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	sort.Strings(files)
	return files
}

// frameOffsets returns the offset of each entry frame in a segment file,
// trusting the lengths (the file must be intact).
func frameOffsets(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var offs []int64
	for off := int64(segHeaderSize); off+frameHeaderSize <= int64(len(b)); {
		n := int64(binary.LittleEndian.Uint32(b[off+4:]))
		if binary.LittleEndian.Uint64(b[off+8:]) == 0 { // seal
			break
		}
		offs = append(offs, off)
		off += frameHeaderSize + n
	}
	return offs
}

// fill appends n entries of size bytes (seq i for the i-th) and returns
// their IDs.
func fill(t testing.TB, s *Spool, n, size int) []ID {
	t.Helper()
	ids := make([]ID, n)
	for i := range n {
		id, err := s.Append(t.Context(), payload(uint64(i), size))
		require.NoError(t, err)
		ids[i] = id
	}
	return ids
}

// readAll reopens the spool in cfg.Dir, drains it and checks every payload
// against its ID (entry with ID i has seq i-1).
func readAll(t testing.TB, cfg Config) (*Spool, *logRecorder, []ID) {
	t.Helper()
	log, rec := newLog(t)
	s := open(t, cfg, Settings{Logger: log})
	ids, data := drain(t, s)
	for i, b := range data {
		seq, err := checkPayload(b)
		require.NoError(t, err)
		require.Equal(t, uint64(ids[i]-1), seq, "entry %d has the payload of another", ids[i])
	}
	return s, rec, ids
}

// openRec opens the spool with a log recorder.
func openRec(t testing.TB, cfg Config) (*Spool, *logRecorder) {
	log, rec := newLog(t)
	return open(t, cfg, Settings{Logger: log}), rec
}

func idRangeList(from, to ID, except ...ID) []ID {
	skip := map[ID]bool{}
	for _, e := range except {
		skip[e] = true
	}
	var ids []ID
	for id := from; id <= to; id++ {
		if !skip[id] {
			ids = append(ids, id)
		}
	}
	return ids
}

func appendBytes(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write(b)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func patch(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	patch(t, path, off, []byte{b[off] ^ 0x40})
}

func TestRecover_TornTailIsTruncated(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(next ID) []byte
	}{
		{"half a frame header", func(ID) []byte { return []byte{1, 2, 3, 4, 5, 6, 7} }},
		{"a header and half its payload", func(next ID) []byte {
			p := payload(uint64(next-1), 300)
			var h [frameHeaderSize]byte
			putFrameHeader(h[:], 0, next, p)
			return append(h[:], p[:150]...)
		}},
		{"zeros (a power loss on a file system that zero-fills)", func(ID) []byte { return make([]byte, 5000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			s := open(t, cfg)
			ids := fill(t, s, 20, 300)
			s.crash()
			segs := segFiles(t, cfg.Dir)
			tail := tc.tail(ids[len(ids)-1] + 1)
			appendBytes(t, segs[len(segs)-1], tail)

			s, rec, got := readAll(t, cfg)
			require.Equal(t, ids, got, "every complete entry is kept")
			st := s.Stats()
			require.Equal(t, uint64(1), st.TornTails)
			require.Equal(t, uint64(len(tail)), st.BytesLost)
			require.Zero(t, st.CorruptEntries)
			require.Equal(t, 1, rec.count(slog.LevelWarn, "torn tail"))
			id, err := s.Append(t.Context(), payload(uint64(len(ids)), 10))
			require.NoError(t, err)
			require.Equal(t, ids[len(ids)-1]+1, id)
			require.NoError(t, s.Close())

			// The tail was cut and the segment sealed: the next Open finds
			// nothing to report.
			s, rec, _ = readAll(t, cfg)
			require.Zero(t, s.Stats().TornTails)
			require.Zero(t, rec.count(slog.LevelWarn, "spool: cut"))
		})
	}
}

func TestRecover_CorruptMiddleFrameIsSkippedAndCounted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clean bool  // closed cleanly (sealed: found by the reader) or crashed (found by the scan)
		at    int64 // byte of the frame to flip: in the payload, or in the length
	}{
		{"payload byte, sealed segment", true, frameHeaderSize + 100},
		{"payload byte, crashed segment", false, frameHeaderSize + 100},
		{"length byte, sealed segment", true, 5},
		{"length byte, crashed segment", false, 6},
		{"ID byte, crashed segment", false, 8},
		{"CRC byte, sealed segment", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			s := open(t, cfg)
			ids := fill(t, s, 30, 300) // 30*316 bytes: one segment
			if tc.clean {
				require.NoError(t, s.Close())
			} else {
				s.crash()
			}
			segs := segFiles(t, cfg.Dir)
			require.Len(t, segs, 1)
			offs := frameOffsets(t, segs[0])
			require.Len(t, offs, len(ids))
			flipByte(t, segs[0], offs[10]+tc.at)

			s, rec, got := readAll(t, cfg)
			require.Equal(t, idRangeList(ids[0], ids[len(ids)-1], ids[10]), got)
			st := s.Stats()
			require.Equal(t, uint64(1), st.CorruptEntries)
			require.Equal(t, uint64(316), st.BytesLost)
			require.Zero(t, st.TornTails)
			require.Equal(t, 1, rec.count(slog.LevelError, "corrupt"))
			require.Equal(t, int64(len(got)), st.Entries, "the lost entry is not waiting for an ack")
			for _, id := range got {
				require.NoError(t, s.Ack(id))
			}
			require.NoError(t, s.Close())

			// Counted once: the loss was recorded with the acks.
			s, rec, got = readAll(t, cfg)
			require.Empty(t, got)
			require.Zero(t, s.Stats().CorruptEntries)
			require.Zero(t, rec.count(slog.LevelError, "corrupt"))
		})
	}
}

func TestRecover_CorruptRunOfFramesIsSkippedUpToTheNextGoodOne(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 30, 300)
	require.NoError(t, s.Close())
	seg := segFiles(t, cfg.Dir)[0]
	offs := frameOffsets(t, seg)
	patch(t, seg, offs[5]+3, make([]byte, offs[9]-offs[5])) // frames 5..8 and the start of 9
	s, _, got := readAll(t, cfg)
	require.Equal(t, idRangeList(ids[0], ids[len(ids)-1], ids[5], ids[6], ids[7], ids[8], ids[9]), got)
	require.Equal(t, uint64(5), s.Stats().CorruptEntries)
}

func TestRecover_CorruptEndOfASealedSegmentIsCounted(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 30, 300)
	require.NoError(t, s.Close())
	seg := segFiles(t, cfg.Dir)[0]
	offs := frameOffsets(t, seg)
	flipByte(t, seg, offs[29]+frameHeaderSize+1) // the last entry, the seal intact
	s, _, got := readAll(t, cfg)
	require.Equal(t, ids[:29], got)
	require.Equal(t, uint64(1), s.Stats().CorruptEntries)
}

func TestRecover_ZeroedSegmentHeaderMovesTheSegmentAside(t *testing.T) {
	for _, which := range []string{"middle", "newest"} {
		t.Run(which, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.SegmentBytes = 4 << 10
			s := open(t, cfg)
			ids := fill(t, s, 60, 300) // 12 frames a segment
			s.crash()
			segs := segFiles(t, cfg.Dir)
			require.Len(t, segs, 5)
			victim := segs[2]
			if which == "newest" {
				victim = segs[4]
			}
			lost := frameOffsets(t, victim)
			firstLost, _ := parseName(filepath.Base(victim), ".seg")
			patch(t, victim, 0, make([]byte, segHeaderSize))

			s, rec, got := readAll(t, cfg)
			var want []ID
			for _, id := range ids {
				if id < firstLost || id >= firstLost+ID(len(lost)) {
					want = append(want, id)
				}
			}
			require.Equal(t, want, got)
			st := s.Stats()
			require.Equal(t, uint64(1), st.CorruptSegments)
			require.Equal(t, 1, rec.count(slog.LevelError, "moved aside"))
			require.FileExists(t, victim+".corrupt")
			require.NoFileExists(t, victim)
			// New IDs never reuse the lost ones.
			id, err := s.Append(t.Context(), payload(1<<40, 10))
			require.NoError(t, err)
			require.Greater(t, id, ids[len(ids)-1])
			require.NoError(t, s.Close())

			s, rec = openRec(t, cfg)
			require.Zero(t, s.Stats().CorruptSegments)
			require.Zero(t, rec.count(slog.LevelError, "moved aside"))
			require.FileExists(t, victim+".corrupt", "kept for inspection")
		})
	}
}

func TestRecover_TruncatedSegment(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	s := open(t, cfg)
	ids := fill(t, s, 60, 300)
	require.NoError(t, s.Close())
	segs := segFiles(t, cfg.Dir)
	offs := frameOffsets(t, segs[1])
	require.NoError(t, os.Truncate(segs[1], offs[7]+100)) // frames 7.. of the second segment gone
	require.NoError(t, os.Truncate(segs[3], 10))          // the fourth: less than a header
	first1, _ := parseName(filepath.Base(segs[1]), ".seg")
	first3, _ := parseName(filepath.Base(segs[3]), ".seg")
	first4, _ := parseName(filepath.Base(segs[4]), ".seg")

	s, rec, got := readAll(t, cfg)
	var want []ID
	for _, id := range ids {
		if (id < first1+7 || id >= first1+ID(len(offs))) && (id < first3 || id >= first4) {
			want = append(want, id)
		}
	}
	require.Equal(t, want, got)
	st := s.Stats()
	require.Equal(t, uint64(len(offs)-7), st.CorruptEntries)
	require.Equal(t, uint64(1), st.CorruptSegments)
	require.Equal(t, 1, rec.count(slog.LevelError, "cut a corrupt or unsynced end"))
	require.Equal(t, 1, rec.count(slog.LevelError, "moved aside"))
}

func TestRecover_MissingSegmentFile(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	s := open(t, cfg)
	ids := fill(t, s, 60, 300)
	require.NoError(t, s.Close())
	segs := segFiles(t, cfg.Dir)
	gone := frameOffsets(t, segs[2])
	first2, _ := parseName(filepath.Base(segs[2]), ".seg")
	require.NoError(t, os.Remove(segs[2]))

	s, _, got := readAll(t, cfg)
	var want []ID
	for _, id := range ids {
		if id < first2 || id >= first2+ID(len(gone)) {
			want = append(want, id)
		}
	}
	require.Equal(t, want, got)
	id, err := s.Append(t.Context(), []byte("x"))
	require.NoError(t, err)
	require.Equal(t, ids[len(ids)-1]+1, id)
}

func TestRecover_GarbageFilesInTheDirectory(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 10, 100)
	require.NoError(t, s.Close())
	garbage := map[string][]byte{
		"notes.txt":            []byte("operator notes"),
		"dead-letter.log":      []byte("not the spool's"),
		"zz.seg":               []byte("not a segment name"),
		"0000000000000000.seg": []byte("ID 0 is not a segment"),
		"00000000000003E8.seg": []byte("upper-case hex is not the spool's"),
		"00000000000003E8.ack": []byte("upper-case hex is not the spool's"),
	}
	for name, b := range garbage {
		require.NoError(t, os.WriteFile(filepath.Join(cfg.Dir, name), b, 0o600))
	}
	require.NoError(t, os.Mkdir(filepath.Join(cfg.Dir, "sub"), 0o700))
	// Garbage under a segment's name, after the real segments.
	junk := payload(99, 3000)
	junkPath := filepath.Join(cfg.Dir, segName(1000))
	require.NoError(t, os.WriteFile(junkPath, junk, 0o600))
	// An ack file with no segment.
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Dir, ackName(500)), []byte("junk"), 0o600))

	s, rec, got := readAll(t, cfg)
	require.Equal(t, ids, got)
	require.Equal(t, uint64(1), s.Stats().CorruptSegments)
	require.Equal(t, 1, rec.count(slog.LevelError, "moved aside"))
	require.FileExists(t, junkPath+".corrupt")
	require.NoFileExists(t, filepath.Join(cfg.Dir, ackName(500)))
	for name, b := range garbage {
		got, err := os.ReadFile(filepath.Join(cfg.Dir, name))
		require.NoError(t, err, name)
		require.Equal(t, b, got, "%s is left alone", name)
	}
	require.DirExists(t, filepath.Join(cfg.Dir, "sub"))
	id, err := s.Append(t.Context(), []byte("x"))
	require.NoError(t, err)
	require.Greater(t, id, ID(1000), "IDs skip past what the garbage segment may have held")
}

func TestRecover_EmptySegmentFileIsRemoved(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 5, 100)
	require.NoError(t, s.Close())
	empty := filepath.Join(cfg.Dir, segName(ids[4]+100))
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	s, _, got := readAll(t, cfg)
	require.Equal(t, ids, got)
	require.Zero(t, s.Stats().CorruptSegments)
}

func TestRecover_DamagedAckFileCostsOnlyDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		redo   []int // indexes of acked entries delivered again
	}{
		{"torn last record", func(t *testing.T, path string) {
			appendBytes(t, path, []byte{1, 2, 3})
		}, nil},
		{"corrupt record", func(t *testing.T, path string) {
			flipByte(t, path, ackHeaderSize+ackRecordSize+9) // the second record: entry 2
		}, []int{2}},
		{"bad header", func(t *testing.T, path string) {
			patch(t, path, 0, []byte("XXXX"))
		}, []int{0, 2, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			s := open(t, cfg)
			ids := fill(t, s, 6, 100)
			drain(t, s)
			for _, i := range []int{0, 2, 4} { // three records
				require.NoError(t, s.Ack(ids[i]))
				require.NoError(t, s.Sync())
			}
			require.NoError(t, s.Close())
			acks, err := filepath.Glob(filepath.Join(cfg.Dir, "*.ack"))
			require.NoError(t, err)
			require.Len(t, acks, 1)
			tc.damage(t, acks[0])

			_, _, got := readAll(t, cfg)
			want := []ID{ids[1], ids[3], ids[5]}
			for _, i := range tc.redo {
				want = append(want, ids[i])
			}
			sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
			require.Equal(t, want, got)
		})
	}
}

func TestRecover_AnAckedEntryLostInATornTailDoesNotLendItsIDToANewEntry(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	ids := fill(t, s, 5, 100)
	drain(t, s)
	require.NoError(t, s.Ack(ids[4]))
	require.NoError(t, s.Sync()) // the ack reached the disk
	s.crash()
	// A power loss: the last frame's data never made it.
	seg := segFiles(t, cfg.Dir)[0]
	offs := frameOffsets(t, seg)
	require.NoError(t, os.Truncate(seg, offs[4]+20))

	s, _, got := readAll(t, cfg)
	require.Equal(t, ids[:4], got)
	id, err := s.Append(t.Context(), []byte("new"))
	require.NoError(t, err)
	require.Greater(t, id, ids[4], "the acked ID is not reused")
	_, b, ok, err := s.TryNext(nil)
	require.NoError(t, err)
	require.True(t, ok, "the new entry is not taken for acknowledged")
	require.Equal(t, []byte("new"), b)
}

func TestRecover_SealedSegmentsAreNotScanned(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	s := open(t, cfg)
	fill(t, s, 100, 300)
	require.NoError(t, s.Close())
	fs := &faultFS{fs: osFS{}}
	s = open(t, cfg, Settings{fs: fs})
	require.Less(t, fs.readBytes.Load(), int64(4<<10), "Open read only headers and seals")
	ids, _ := drain(t, s)
	require.Len(t, ids, 100)
}

// Open must not fail because of what is in the directory. A foreign file
// whose name is a segment name in upper-case hex is not a segment (the spool
// opens the lower-case name): it is left alone.
func TestRecover_UpperCaseSegmentNameDoesNotFailOpen(t *testing.T) {
	cfg := testConfig(t)
	require.NoError(t, os.MkdirAll(cfg.Dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Dir, "000000000000000A.seg"), []byte("not ours"), 0o600))
	s, err := Open(cfg, Settings{})
	require.NoError(t, err)
	require.Zero(t, s.Stats().CorruptSegments)
	require.NoError(t, s.Close())
	require.FileExists(t, filepath.Join(cfg.Dir, "000000000000000A.seg"))
}

// Regression (found by TestPowerCut): a segment found finished at Open (all
// of it acknowledged in its ack file, its deletion cut short by a crash) was
// removed from the table in place while Open looped over the same array; the
// new active segment slid into the loop's range and, being empty, was deleted
// as "finished" too. Every entry appended after that Open went to an
// unlinked file and was gone at the next restart, whatever the sync policy.
func TestRecover_FinishedSegmentAtOpenDoesNotTakeTheActiveSegmentWithIt(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sync = SyncAlways
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	first := fill(t, s, 3, 100)
	drain(t, s)
	for _, id := range first {
		require.NoError(t, s.Ack(id))
	}
	require.NoError(t, s.Sync()) // the ack file covers the whole (active) segment
	fs.set(func(f *faultFS) { f.removeFault = syscall.EIO })
	var kept []ID
	for i := range 2 { // a segment each; the first segment is finished, its deletion fails
		id, err := s.Append(t.Context(), payload(uint64(3+i), 16000))
		require.NoError(t, err)
		kept = append(kept, id)
	}
	s.crash()
	// Three segments to recover (the slice that holds them has room for a
	// fourth, the new active one), the first one finished.
	require.Len(t, segFiles(t, cfg.Dir), 3)

	s = open(t, cfg)
	id, err := s.Append(t.Context(), payload(99, 100))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s = open(t, cfg)
	got, _ := drain(t, s)
	require.Equal(t, append(kept, id), got, "the entry appended after the Open survived")
}
