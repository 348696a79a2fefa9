package spool

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// drainBatches reads every entry ready now with NextBatch's reader, in
// buffers of random capacity (some smaller than an entry), and checks that
// each entry lies in its buffer unless it came alone.
func drainBatches(t *testing.T, s *Spool, rng *rand.Rand) (ids []ID, data [][]byte, batches int) {
	t.Helper()
	for {
		buf := make([]byte, 0, rng.IntN(12<<10))
		max := 1 + rng.IntN(20)
		ents, out, err := s.tryBatch(buf, max, nil)
		require.NoError(t, err)
		if len(ents) == 0 {
			return ids, data, batches
		}
		batches++
		require.LessOrEqual(t, len(ents), max)
		for _, e := range ents {
			inBuf := within(out, e.Data)
			require.True(t, inBuf || len(ents) == 1 || e.ID == ents[len(ents)-1].ID, "entry %d read alone but not last", e.ID)
			ids = append(ids, e.ID)
			data = append(data, bytes.Clone(e.Data))
		}
	}
}

// within reports whether d lies in buf's backing array.
func within(buf, d []byte) bool {
	if len(d) == 0 {
		return true
	}
	if cap(buf) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(d)))
	return p >= lo && p+uintptr(len(d)) <= lo+uintptr(cap(buf))
}

func TestNextBatch_SameEntriesAsNext(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			cfg := testConfig(t)
			s := open(t, cfg)
			var acked []ID
			for i := range 300 {
				size := 12 + rng.IntN(2000)
				if rng.IntN(40) == 0 {
					size = 20 << 10 // larger than a segment and than most buffers
				}
				id, err := s.Append(t.Context(), payload(uint64(i), size))
				require.NoError(t, err)
				if rng.IntN(10) == 0 { // acknowledged before it is read
					require.NoError(t, s.Ack(id))
					acked = append(acked, id)
				}
			}
			require.NoError(t, s.Close())

			// Damage a few frames of sealed segments: both readers must
			// skip and count the same ones.
			segs := segFiles(t, cfg.Dir)
			for _, path := range segs[:len(segs)-1] {
				if rng.IntN(3) != 0 {
					continue
				}
				offs := frameOffsets(t, path)
				b, err := os.ReadFile(path)
				require.NoError(t, err)
				off := offs[rng.IntN(len(offs))] + frameHeaderSize + 3
				if off < int64(len(b)) {
					b[off] ^= 0x5a
					require.NoError(t, os.WriteFile(path, b, 0o600))
				}
			}

			dirA, dirB := copyDir(t, cfg.Dir), copyDir(t, cfg.Dir)
			cfgA, cfgB := cfg, cfg
			cfgA.Dir, cfgB.Dir = dirA, dirB
			a := open(t, cfgA)
			wantIDs, wantData := drain(t, a)
			b := open(t, cfgB)
			gotIDs, gotData, batches := drainBatches(t, b, rng)
			require.Equal(t, wantIDs, gotIDs)
			require.Equal(t, wantData, gotData)
			require.Less(t, batches, len(gotIDs), "entries come several per read")
			sa, sb := a.Stats(), b.Stats()
			require.Equal(t, sa.CorruptEntries, sb.CorruptEntries)
			require.Equal(t, sa.BytesLost, sb.BytesLost)
			t.Logf("%d entries in %d reads, %d lost to corruption", len(gotIDs), batches, sb.CorruptEntries)
			for _, id := range acked {
				require.NotContains(t, gotIDs, id, "acknowledged before it was read")
			}
			for i, d := range gotData {
				seq, err := checkPayload(d)
				require.NoError(t, err)
				require.Equal(t, uint64(gotIDs[i]-1), seq)
			}
		})
	}
}

func TestNextBatch_BlocksUntilAnEntryAndFollowsTheWriter(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	done := make(chan []Entry)
	go func() {
		ents, _, err := s.NextBatch(t.Context(), make([]byte, 0, 64<<10), 100, nil)
		if err != nil {
			ents = nil
		}
		done <- ents
	}()
	id, err := s.Append(t.Context(), payload(0, 100))
	require.NoError(t, err)
	ents := <-done
	require.Len(t, ents, 1)
	require.Equal(t, id, ents[0].ID)

	// Appends across several segments come in few reads, none twice.
	ids := fill(t, s, 200, 700)
	var got []ID
	buf := make([]byte, 0, 64<<10)
	for len(got) < len(ids) {
		var err error
		ents, _, err = s.NextBatch(t.Context(), buf[:0], 1000, ents[:0])
		require.NoError(t, err)
		for _, e := range ents {
			got = append(got, e.ID)
			seq, err := checkPayload(e.Data)
			require.NoError(t, err)
			require.Equal(t, uint64(e.ID-2), seq, "fill's payloads count from 0 after the first entry")
		}
	}
	require.Len(t, got, len(ids))
	for i := range ids {
		require.Equal(t, ids[i], got[i])
	}
}

// A read into the caller's buffer allocates nothing.
func TestNextBatch_Alloc(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	cfg := testConfig(t)
	cfg.SegmentBytes = 64 << 20
	s := open(t, cfg)
	fill(t, s, 4000, 500)
	buf := make([]byte, 0, 64<<10)
	ents := make([]Entry, 0, 200)
	allocs := testing.AllocsPerRun(20, func() {
		var err error
		ents, _, err = s.NextBatch(t.Context(), buf[:0], 200, ents[:0])
		if err != nil || len(ents) == 0 {
			panic(fmt.Sprint("no entries: ", err))
		}
	})
	require.Zero(t, allocs)
}

// Regression: a bulk read filled the whole buffer, so with entries of a
// little over half a buffer (large aggregates against a sender's 1 MiB +
// 64 KiB slab) it copied most of the next entry as well, only to read it
// again at the next call (and, in the same call, what was left of the
// buffer): 2.5 bytes read per byte delivered. Once a read
// has seen the next header, it reads that frame and no more.
func TestNextBatch_ReadsLargeEntriesOnce(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 << 20
	fs := &faultFS{fs: osFS{}}
	s := open(t, cfg, Settings{fs: fs})
	const size, n = 600 << 10, 12
	for i := range n {
		_, err := s.Append(t.Context(), payload(uint64(i), size))
		require.NoError(t, err)
	}
	before := fs.readBytes.Load()
	buf := make([]byte, 0, 1<<20+64<<10)
	var got int
	var ents []Entry
	for got < n {
		var err error
		ents, _, err = s.NextBatch(t.Context(), buf[:0], 500, ents[:0])
		require.NoError(t, err)
		for _, e := range ents {
			require.Equal(t, payload(uint64(e.ID-1), size), e.Data)
			got++
		}
	}
	read := fs.readBytes.Load() - before
	// What opening the segment reads (the first frame, the careful way)
	// and the first bulk read, before any header was seen, may overshoot.
	require.LessOrEqual(t, read, int64(n*(size+frameHeaderSize)+2*cap(buf)),
		"read %d bytes to deliver %d", read, n*size)
	t.Logf("read %d bytes to deliver %d", read, n*size)
}

// A frame whose length was seen by a bulk read, that fits in the buffer's
// spare room but leaves no room for the next frame's header after it: the
// read stops at the buffer's end (it read past it before: a panic).
func TestNextBatch_FrameThatFillsTheBufferExactly(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 << 20
	s := open(t, cfg, Settings{})
	const size = 40 << 10
	for _, spareAfter := range []int{0, 1, frameHeaderSize - 1} {
		first, err := s.Append(t.Context(), payload(1, 100))
		require.NoError(t, err)
		_, err = s.Append(t.Context(), payload(2, size))
		require.NoError(t, err)
		_, err = s.Append(t.Context(), payload(3, 100))
		require.NoError(t, err)
		// The first call reads the small frame and sees the large one's
		// header; the second has exactly the large frame's room, plus
		// spareAfter bytes.
		small := make([]byte, 0, frameHeaderSize+100+frameHeaderSize+10)
		ents, _, err := s.NextBatch(t.Context(), small, 2, nil)
		require.NoError(t, err)
		require.Len(t, ents, 1)
		require.Equal(t, first, ents[0].ID)
		exact := make([]byte, 0, frameHeaderSize+size+spareAfter)
		ents, _, err = s.NextBatch(t.Context(), exact, 10, nil)
		require.NoError(t, err)
		require.NotEmpty(t, ents)
		require.Equal(t, payload(2, size), ents[0].Data, "spare %d", spareAfter)
		ents, _, err = s.NextBatch(t.Context(), make([]byte, 0, 1<<20), 10, nil)
		require.NoError(t, err)
		require.Equal(t, payload(3, 100), ents[len(ents)-1].Data)
		for _, id := range []ID{first, first + 1, first + 2} {
			require.NoError(t, s.Ack(id))
		}
	}
}
