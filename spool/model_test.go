package spool

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

// fifoModel is what the spool should hold: a FIFO of entries by ID, each
// pending (must be delivered), maybe (acknowledged, but the ack was not yet
// on disk when the process crashed: it may come again, at most once) or
// gone (acknowledged for good).
type fifoModel struct {
	data    map[ID][]byte
	pending map[ID]bool
	maybe   map[ID]bool
	volatil map[ID]bool // acked since the last Sync/Close: becomes maybe on a crash
	handed  map[ID]bool // handed out since the last Open
	lastID  ID
	lastOut ID // the last ID handed out in this Open
	written ID // write-behind: every ID up to it is known to be written
}

func newModel() *fifoModel {
	return &fifoModel{data: map[ID][]byte{}, pending: map[ID]bool{}, maybe: map[ID]bool{},
		volatil: map[ID]bool{}, handed: map[ID]bool{}}
}

func (m *fifoModel) sorted(set map[ID]bool) []ID {
	ids := make([]ID, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// next checks an entry the spool handed out and updates the model.
func (m *fifoModel) next(id ID, b []byte) error {
	if id <= m.lastOut {
		return fmt.Errorf("handed out %d after %d: not in ID order", id, m.lastOut)
	}
	if !m.pending[id] && !m.maybe[id] {
		return fmt.Errorf("handed out %d, which is acknowledged or was never appended", id)
	}
	if m.handed[id] {
		return fmt.Errorf("handed out %d twice in one Open", id)
	}
	for pid := range m.pending {
		if pid < id && !m.handed[pid] {
			return fmt.Errorf("handed out %d but skipped pending %d", id, pid)
		}
	}
	if !bytes.Equal(m.data[id], b) {
		return fmt.Errorf("entry %d: got %d bytes that differ from the %d appended", id, len(b), len(m.data[id]))
	}
	for mid := range m.maybe { // maybes it passed over were acknowledged for good
		if mid < id {
			delete(m.maybe, mid)
		}
	}
	if m.maybe[id] { // its ack was lost: it is pending again
		delete(m.maybe, id)
		m.pending[id] = true
	}
	m.handed[id] = true
	m.lastOut = id
	return nil
}

// none checks that the spool has nothing more to hand out, when every
// entry up to written is written (with write-behind, entries after it may
// still be staged).
func (m *fifoModel) none(written ID) error {
	for id := range m.pending {
		if !m.handed[id] && id <= written {
			return fmt.Errorf("nothing handed out but %d is pending", id)
		}
	}
	for id := range m.maybe { // not handed out: acknowledged for good after all
		if id <= written {
			delete(m.maybe, id)
		}
	}
	return nil
}

// crashedUnwritten drops the entries after last, the last ID the spool
// found at Open after a crash: with write-behind, what was staged and not
// yet written dies with the process. It is an error if one of them was
// known to be written.
func (m *fifoModel) crashedUnwritten(last ID) error {
	for id := range m.data {
		if id <= last {
			continue
		}
		if id <= m.written && (m.pending[id] || m.maybe[id]) {
			return fmt.Errorf("entry %d was written, yet a crash lost it", id)
		}
		delete(m.data, id)
		delete(m.pending, id)
		delete(m.maybe, id)
	}
	m.lastID = last
	return nil
}

func (m *fifoModel) ack(id ID) {
	if m.pending[id] {
		delete(m.pending, id)
		m.volatil[id] = true
	}
	if m.maybe[id] {
		delete(m.maybe, id)
		m.volatil[id] = true
	}
}

func (m *fifoModel) synced() { clear(m.volatil) }

func (m *fifoModel) reopened(crashed bool) {
	if crashed {
		for id := range m.volatil {
			m.maybe[id] = true
		}
	}
	clear(m.volatil)
	clear(m.handed)
	m.lastOut = 0
}

func TestModel_RandomOperationsMatchAFIFO(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4}
	ops := 2500
	if testing.Short() {
		seeds, ops = seeds[:1], 800
	}
	for _, seed := range seeds {
		for _, wb := range []bool{false, true} {
			t.Run(fmt.Sprint("seed=", seed, "/write_behind=", wb), func(t *testing.T) {
				runModel(t, seed, ops, wb)
			})
		}
	}
}

func runModel(t *testing.T, seed uint64, ops int, wb bool) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10
	cfg.Sync = []SyncPolicy{SyncAlways, SyncInterval, SyncNever}[seed%3]
	if wb && cfg.Sync == SyncAlways {
		cfg.Sync = SyncInterval
	}
	log, _ := newLog(t)
	set := Settings{Logger: log, syncWrites: !wb}

	s, err := Open(cfg, set)
	require.NoError(t, err)
	defer func() { _ = s.Close() }()
	m := newModel()
	var buf []byte
	var trace []string
	fail := func(format string, args ...any) {
		t.Helper()
		n := min(len(trace), 30)
		t.Fatalf("seed %d, after %d ops (last: %v): %s", seed, len(trace), trace[len(trace)-n:], fmt.Sprintf(format, args...))
	}
	for range ops {
		switch r := rng.IntN(100); {
		case r < 33: // Append
			size := rng.IntN(600)
			if rng.IntN(30) == 0 {
				size = 4000 + rng.IntN(3000) // larger than a segment
			}
			e := make([]byte, size)
			for i := range e {
				e[i] = byte(rng.Uint32())
			}
			id, err := s.Append(context.Background(), e)
			if err != nil {
				fail("append: %v", err)
			}
			trace = append(trace, fmt.Sprint("append ", id, " (", size, "B)"))
			if id != m.lastID+1 {
				fail("append returned %d after %d", id, m.lastID)
			}
			m.lastID = id
			m.data[id] = e
			m.pending[id] = true
			if !wb {
				m.written = id
			}
		case r < 48: // NextBatch's reader, in a buffer of random size
			w := seen(wb, s, m, rng)
			ents, _, err := s.tryBatch(make([]byte, 0, rng.IntN(3000)), 1+rng.IntN(8), nil)
			if err != nil {
				fail("batch: %v", err)
			}
			if len(ents) == 0 {
				trace = append(trace, "batch: none")
				if err := m.none(w); err != nil {
					fail("%v", err)
				}
				continue
			}
			for _, e := range ents {
				trace = append(trace, fmt.Sprint("batch ", e.ID))
				if err := m.next(e.ID, e.Data); err != nil {
					fail("%v", err)
				}
			}
		case r < 62: // TryNext
			w := seen(wb, s, m, rng)
			id, b, ok, err := s.TryNext(buf)
			if err != nil {
				fail("next: %v", err)
			}
			if !ok {
				trace = append(trace, "next: none")
				if err := m.none(w); err != nil {
					fail("%v", err)
				}
				continue
			}
			trace = append(trace, fmt.Sprint("next ", id))
			if err := m.next(id, b); err != nil {
				fail("%v", err)
			}
			buf = b
		case r < 88: // Ack something handed out, now and then something not read yet
			var cands []ID
			for id := range m.handed {
				if m.pending[id] || m.maybe[id] {
					cands = append(cands, id)
				}
			}
			if rng.IntN(8) == 0 {
				cands = cands[:0]
				for id := range m.pending {
					cands = append(cands, id)
				}
			}
			if len(cands) == 0 {
				continue
			}
			sort.Slice(cands, func(i, j int) bool { return cands[i] < cands[j] })
			id := cands[rng.IntN(len(cands))]
			trace = append(trace, fmt.Sprint("ack ", id))
			if err := s.Ack(id); err != nil {
				fail("ack %d: %v", id, err)
			}
			m.ack(id)
		case r < 91:
			trace = append(trace, "sync")
			if err := s.Sync(); err != nil {
				fail("sync: %v", err)
			}
			m.synced()
			m.written = m.lastID
		case r < 95, r < 100:
			crashed := r >= 95
			if crashed {
				trace = append(trace, "crash")
				s.crash()
			} else {
				trace = append(trace, "close")
				if err := s.Close(); err != nil {
					fail("close: %v", err)
				}
			}
			m.reopened(crashed)
			if s, err = Open(cfg, set); err != nil {
				fail("reopen: %v", err)
			}
			if wb && crashed {
				if err := m.crashedUnwritten(ID(s.lastID.Load())); err != nil {
					fail("%v", err)
				}
			}
			m.written = m.lastID
			st := s.Stats()
			if st.Entries < int64(len(m.pending)) || st.Entries > int64(len(m.pending)+len(m.maybe)) {
				fail("reopened with %d entries; the model has %d pending and %d maybe", st.Entries, len(m.pending), len(m.maybe))
			}
			if st.CorruptEntries+st.CorruptSegments+st.TornTails+st.BytesLost != 0 {
				fail("a clean stop or kill -9 was reported as damage: %+v", st)
			}
		}
		if err := s.failure(); err != nil {
			fail("%v", err)
		}
	}
	// In the end the spool delivers exactly what the model says.
	require.NoError(t, s.flushStage())
	for {
		id, b, ok, err := s.TryNext(nil)
		require.NoError(t, err)
		if !ok {
			require.NoError(t, m.none(m.lastID))
			break
		}
		require.NoError(t, m.next(id, b))
	}
	t.Logf("seed %d (%s): %d ops, %d appended, %d pending at the end", seed, cfg.Sync, ops, m.lastID, len(m.pending))
}

// seen returns the highest ID a read may not pass over: every entry up to it
// is written. With write-behind, now and then it flushes the stage first,
// else it is what the spool had written before the read.
func seen(wb bool, s *Spool, m *fifoModel, rng *rand.Rand) ID {
	if !wb {
		return m.written
	}
	if rng.IntN(3) == 0 {
		if err := s.flushStage(); err == nil {
			m.written = m.lastID
		}
	}
	return max(m.written, ID(s.lastID.Load()))
}

// stopBackground stops the syncer and the maintainer, as a loaded machine
// may keep them from running for a while; crash and Close still work.
func stopBackground(s *Spool) {
	close(s.closing)
	s.wg.Wait()
	s.closing = make(chan struct{})
}

// Acks that finish a sealed segment retire it; until the maintainer deletes
// its files, those acks are nowhere on disk. Sync must still make them
// durable: a crash after Sync may not deliver them again.
func TestModel_SyncPersistsAcksOfARetiredSegment(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	stopBackground(s)          // the maintainer does not get to run before the crash
	ids := fill(t, s, 5, 4000) // the 5th rolls: the first segment holds 4
	s.mu.Lock()
	require.Len(t, s.segs, 2)
	first := s.segs[0].count()
	s.mu.Unlock()
	for _, id := range ids[:first] {
		require.NoError(t, s.Ack(id))
	}
	require.NoError(t, s.Sync())
	s.crash()
	s = open(t, cfg)
	require.Equal(t, int64(len(ids))-first, s.Stats().Entries, "acks made before Sync were lost")
	got, _ := drain(t, s)
	require.Equal(t, ids[first:], got)
}
