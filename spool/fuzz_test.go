package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// segmentBytes builds a segment file the way the writer does: header, n
// frames, and a seal if sealed.
func segmentBytes(first ID, salt uint32, n int, sealed bool) []byte {
	h := segHeader{first: first, salt: salt}
	hb := h.encode()
	b := hb[:]
	for i := range n {
		p := payload(uint64(first)+uint64(i)-1, 12+i*7%40)
		var fh [frameHeaderSize]byte
		putFrameHeader(fh[:], salt, first+ID(i), p)
		b = append(append(b, fh[:]...), p...)
	}
	if sealed {
		b = appendSeal(b, h, first+ID(n)-1, int64(len(b)))
	}
	return b
}

func addSegmentSeeds(f *testing.F) {
	full := segmentBytes(1, 0x1234, 8, true)
	f.Add(full)
	f.Add(segmentBytes(1, 0x1234, 8, false))
	f.Add(segmentBytes(1, 7, 0, false))
	f.Add(full[:len(full)-sealFrameSize-10]) // torn
	flipped := bytes.Clone(full)
	flipped[100] ^= 1
	f.Add(flipped)
	zeroed := bytes.Clone(full)
	clear(zeroed[:segHeaderSize])
	f.Add(zeroed)
	f.Add(append(segmentBytes(1, 9, 3, false), make([]byte, 40)...))
}

// maxFuzzInput keeps fuzz inputs small: the engine minimizes every new
// input, and that takes long for large ones.
const maxFuzzInput = 16 << 10

// noSyncFS skips fsyncs, so that FuzzOpenSegment runs fast; durability is
// not what it checks.
type noSyncFS struct{ osFS }

func (noSyncFS) SyncDir(string) error { return nil }
func (fs noSyncFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := fs.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

type noSyncFile struct{ file }

func (noSyncFile) Sync() error { return nil }

// FuzzScanFrames checks the frame scanner on arbitrary segment bytes: no
// panic, the valid part ends within the file, frames come in ID order, and
// scanning just the valid part finds the same frames.
func FuzzScanFrames(f *testing.F) {
	addSegmentSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		h, err := parseSegHeader(data)
		if err != nil {
			return
		}
		r := bytes.NewReader(data)
		res, err := scanFrames(newFrameReader(r, h.salt, maxEntryLimit, nil), h.first, int64(len(data)))
		require.NoError(t, err)
		require.LessOrEqual(t, res.end, int64(len(data)))
		require.GreaterOrEqual(t, res.end, int64(segHeaderSize))
		require.GreaterOrEqual(t, res.last, h.first-1)
		require.LessOrEqual(t, res.frames, int64(res.last-h.first+1))

		again, err := scanFrames(newFrameReader(bytes.NewReader(data[:res.end]), h.salt, maxEntryLimit, nil), h.first, res.end)
		require.NoError(t, err)
		require.Equal(t, res, again, "the valid prefix scans the same")

		// Walking the frames one by one agrees with the scan.
		fr := newFrameReader(r, h.salt, maxEntryLimit, nil)
		off, after, goodEnd := int64(segHeaderSize), h.first-1, int64(segHeaderSize)
		var frames int64
		for off < res.end {
			id, _, next, err := fr.frame(off, res.end, nil, true)
			if err == nil && plausible(id, off, goodEnd, after) {
				after, goodEnd, off = id, next, next
				frames++
				continue
			}
			p, _, ok, err := fr.resync(off+1, res.end, goodEnd, after)
			require.NoError(t, err)
			require.True(t, ok, "the scan found a frame after %d", off)
			off = p
		}
		require.Equal(t, res.frames, frames)
		require.Equal(t, res.last, after)
	})
}

// FuzzOpenSegment writes arbitrary bytes as a segment file and opens the
// spool on it: Open succeeds, reading hands out only intact entries in ID
// order, and a second Open (recovery is idempotent) finds nothing new to
// report and hands out the same entries.
func FuzzOpenSegment(f *testing.F) {
	addSegmentSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		cfg := testConfig(t)
		require.NoError(t, os.WriteFile(filepath.Join(cfg.Dir, segName(1)), data, 0o600))
		read := func() ([]ID, Stats) {
			s, err := Open(cfg, Settings{fs: noSyncFS{}})
			require.NoError(t, err)
			defer s.Close()
			var ids []ID
			for {
				id, b, ok, err := s.TryNext(nil)
				require.NoError(t, err)
				if !ok {
					break
				}
				if len(ids) > 0 {
					require.Greater(t, id, ids[len(ids)-1])
				}
				seq, err := checkPayload(b)
				if err == nil { // seeds carry our payloads; fuzzed frames may not
					require.Equal(t, uint64(id-1), seq)
				}
				ids = append(ids, id)
			}
			return ids, s.Stats()
		}
		first, _ := read()
		second, st := read()
		require.Equal(t, first, second)
		require.Zero(t, st.TornTails+st.CorruptSegments, "recovery left something to recover: %+v", st)
	})
}

// FuzzAckFile checks ack-file recovery on arbitrary bytes: no panic, only
// IDs of the segment are marked, and the file is left whole records long.
func FuzzAckFile(f *testing.F) {
	h := encodeAckHeader(1)
	good := appendAckRecord(appendAckRecord(h[:], idRange{1, 3}), idRange{7, 1})
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add(append(bytes.Clone(good), 1, 2, 3))
	bad := bytes.Clone(good)
	bad[ackHeaderSize+3] ^= 1
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		cfg := testConfig(t)
		path := filepath.Join(cfg.Dir, ackName(1))
		require.NoError(t, os.WriteFile(path, data, 0o600))
		s := &Spool{cfg: cfg, dir: cfg.Dir, fs: osFS{}}
		s.log, _ = newLog(t)
		g := &segment{hdr: segHeader{first: 1}, last: 10}
		_, err := s.recoverAcks(g, make([]byte, 3*ackRecordSize+5)) // small: reads in several chunks
		require.NoError(t, err)
		require.LessOrEqual(t, g.done.n, int64(10))
		require.False(t, g.done.get(10), "ID 11 is not in the segment")
		if fi, err := os.Stat(path); err == nil {
			require.Zero(t, (fi.Size()-ackHeaderSize)%ackRecordSize)
		}
	})
}

// TestFuzzSeedsAreUpToDate rewrites testdata/fuzz from the seeds above when
// SPOOL_UPDATE_FUZZ_SEEDS=1, so the corpora hold real segment files.
func TestFuzzSeedsAreUpToDate(t *testing.T) {
	if os.Getenv("SPOOL_UPDATE_FUZZ_SEEDS") != "1" {
		t.Skip("set SPOOL_UPDATE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	write := func(target string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for i, b := range seeds {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644))
		}
	}
	// Real files from the spool: a crashed segment, then the same one sealed
	// by recovery, and a torn one.
	cfg := testConfig(t)
	s := open(t, cfg)
	for i := range 25 {
		_, err := s.Append(t.Context(), payload(uint64(i), 12+i%30))
		require.NoError(t, err)
	}
	s.crash()
	read := func() []byte {
		segs := segFiles(t, cfg.Dir)
		b, err := os.ReadFile(segs[0])
		require.NoError(t, err)
		return b
	}
	crashed := read()
	require.NoError(t, open(t, cfg).Close())
	sealed := read()
	require.Len(t, sealed, len(crashed)+sealFrameSize)
	torn := append(bytes.Clone(crashed), make([]byte, 37)...)
	binary.LittleEndian.PutUint32(torn[len(crashed)+4:], 12345)
	seeds := [][]byte{sealed, crashed, torn, segmentBytes(1, 0xabc, 5, false)}
	write("FuzzScanFrames", seeds)
	write("FuzzOpenSegment", seeds)
	h := encodeAckHeader(1)
	write("FuzzAckFile", [][]byte{appendAckRecord(appendAckRecord(h[:], idRange{1, 3}), idRange{5, 2})})
}
