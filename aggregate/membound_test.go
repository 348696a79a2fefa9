package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// retainedNow adds up the memory of the Builder's buffers from the buffers
// themselves (not from its own count), and checks that only groups with an
// open aggregate hold buffers.
func retainedNow(t *testing.T, b *Builder) int {
	t.Helper()
	n := 0
	for i := range b.groups {
		g := &b.groups[i]
		if g.count == 0 {
			if g.buf != nil || cap(g.pks.enc) != 0 || cap(g.ehks.enc) != 0 {
				t.Fatalf("group %d holds buffers without an open aggregate", i)
			}
			continue
		}
		n += g.weigh()
	}
	for i := range b.pool {
		n += b.pool[i].weigh()
	}
	return n
}

// checkBound checks the memory bound after an Add: the Builder's count of
// its buffers is exact, and the bytes pending and the buffers are within
// MaxPendingBytes unless one aggregate is open alone (a record larger than
// the bound).
func checkBound(t *testing.T, b *Builder) {
	t.Helper()
	retained := retainedNow(t, b)
	require.Equal(t, retained, b.RetainedBytes(), "the Builder's count of its buffers")
	open := 0
	for gi := b.head; gi != none; gi = b.groups[gi].next {
		open++
	}
	_, pending := b.Pending()
	if open > 1 {
		require.LessOrEqual(t, pending, b.cfg.MaxPendingBytes)
		require.LessOrEqual(t, retained, b.cfg.MaxPendingBytes)
	}
}

// keysPerShard finds, for each shard of m, per partition keys that hash
// into it.
func keysPerShard(t *testing.T, m *ShardMap, per int) [][]string {
	t.Helper()
	keys := make([][]string, m.Len())
	missing := m.Len() * per
	for i := 0; missing > 0; i++ {
		require.Less(t, i, 1<<22, "keys for every shard")
		k := fmt.Sprintf("key-%d", i)
		s, ok := m.Lookup(PartitionKeyHash(k))
		require.True(t, ok)
		if len(keys[s]) < per {
			keys[s] = append(keys[s], k)
			missing--
		}
	}
	return keys
}

// seqRecord is a record's data: its group's number and its sequence number
// in that group, then filler.
func seqRecord(group, seq, size int) []byte {
	d := make([]byte, size)
	binary.BigEndian.PutUint32(d, uint32(group))
	binary.BigEndian.PutUint32(d[4:], uint32(seq))
	for i := 8; i < size; i++ {
		d[i] = byte('a' + (group+seq+i)%26) // no "\n": lines stay lines
	}
	return d
}

// checkAllOnceInOrder decodes what was emitted and checks that each of
// groups groups got records 0 to perGroup-1, once each and in order, in
// aggregates of the group the records were added to.
func checkAllOnceInOrder(t *testing.T, out []emitted, groups, perGroup int, groupOf func(owner int) int) {
	t.Helper()
	next := make([]int, groups)
	for _, e := range out {
		recs, err := DecodeKinesisRecord(e.Agg.PartitionKey, e.Agg.ExplicitHashKey, e.Data)
		require.NoError(t, err)
		require.Len(t, recs, e.Agg.Count)
		for _, r := range recs {
			owner := int(binary.BigEndian.Uint32(r.Data))
			seq := int(binary.BigEndian.Uint32(r.Data[4:]))
			require.Less(t, owner, groups)
			require.Equal(t, next[owner], seq, "records of group %d in order, each once", owner)
			if groupOf != nil {
				require.Equal(t, groupOf(owner), e.Group, "record of %d emitted by its own group", owner)
			}
			next[owner]++
		}
	}
	for g, n := range next {
		require.Equal(t, perGroup, n, "every record of group %d emitted", g)
	}
}

func TestBuilder_MemoryStaysWithinMaxPendingBytesWhateverTheShards(t *testing.T) {
	const (
		shards   = 2000
		rounds   = 12
		maxBytes = 16 << 10
		bound    = 256 << 10
	)
	m := evenShards(t, shards)
	keys := keysPerShard(t, m, 3)
	for _, tc := range []struct {
		name    string
		shards  *ShardMap
		framing Framing
		ehk     bool
	}{
		{"shard map", m, FramingKPL, false},
		{"shard map, lines", m, FramingLines, false},
		{"shard map, explicit hash keys", m, FramingKPL, true},
		{"by key", nil, FramingKPL, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBuilder(Config{MaxBytes: maxBytes, MaxPendingBytes: bound, MaxGroups: shards, Framing: tc.framing}, tc.shards)
			require.NoError(t, err)
			var c collector
			maxPending, maxRetained := 0, 0
			for round := range rounds {
				for s := range shards {
					r := Record{Data: seqRecord(s, round, 100+(s*7+round*13)%300)}
					if tc.shards == nil {
						r.PartitionKey = keys[s][0] // one key, one group per "shard"
					} else {
						r.PartitionKey = keys[s][round%3]
					}
					if tc.ehk {
						r.ExplicitHashKey = m.Shard(s).Start.String()
					}
					g, err := b.Add(r, t0, c.emit)
					require.NoError(t, err)
					if tc.shards != nil {
						require.Equal(t, s, g)
					}
					_, pending := b.Pending()
					// The Builder's own count, checked after every Add; a
					// recount from the buffers themselves (O(groups)) every
					// 101st Add: after each one it took 40 s under -race.
					retained := b.RetainedBytes()
					if (round*shards+s)%101 == 0 {
						require.Equal(t, retainedNow(t, b), retained, "the Builder's count of its buffers")
					}
					maxPending, maxRetained = max(maxPending, pending), max(maxRetained, retained)
				}
			}
			require.LessOrEqual(t, maxPending, bound)
			require.LessOrEqual(t, maxRetained, bound)
			require.Greater(t, maxRetained, bound*3/4, "the bound is used, not undercut")
			require.Greater(t, maxPending, bound/8, "the open aggregates hold records, not only buffers")
			require.Positive(t, b.ClosedForMemory())
			require.NoError(t, b.FlushAll(c.emit))
			n, pending := b.Pending()
			require.Zero(t, n)
			require.Zero(t, pending)
			require.LessOrEqual(t, retainedNow(t, b), bound, "buffers kept for reuse")
			var groupOf func(int) int
			if tc.shards != nil {
				groupOf = func(s int) int { return s }
			}
			checkAllOnceInOrder(t, c.out, shards, rounds, groupOf)
			t.Logf("%d aggregates, %d closed early for memory, pending at most %d, retained at most %d", len(c.out), b.ClosedForMemory(), maxPending, maxRetained)
		})
	}
}

func TestBuilder_UnderTheBoundNothingIsClosedEarly(t *testing.T) {
	m := evenShards(t, 64)
	keys := keysPerShard(t, m, 1)
	b, err := NewBuilder(Config{}, m)
	require.NoError(t, err)
	var c collector
	for round := range 50 {
		for s := range 64 {
			_, err := b.Add(Record{PartitionKey: keys[s][0], Data: seqRecord(s, round, 200)}, t0, c.emit)
			require.NoError(t, err)
		}
	}
	require.Zero(t, b.ClosedForMemory())
	require.Empty(t, c.out, "64 aggregates of 10 KiB fit 8 MiB")
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 64)
	checkAllOnceInOrder(t, c.out, 64, 50, func(s int) int { return s })
}

func TestBuilder_ALoneRecordLargerThanTheBoundIsTakenAlone(t *testing.T) {
	m := evenShards(t, 8)
	keys := keysPerShard(t, m, 1)
	b, err := NewBuilder(Config{MaxBytes: 16 << 10, MaxPendingBytes: 32 << 10}, m)
	require.NoError(t, err)
	var c collector
	for s := range 8 {
		_, err := b.Add(Record{PartitionKey: keys[s][0], Data: seqRecord(s, 0, 1000)}, t0, c.emit)
		require.NoError(t, err)
	}
	require.Empty(t, c.out)
	_, err = b.Add(Record{PartitionKey: keys[3][0], Data: seqRecord(3, 1, 100<<10)}, t0, c.emit)
	require.NoError(t, err)
	n, pending := b.Pending()
	require.Equal(t, 1, n, "the large record alone is open")
	require.Equal(t, len(keys[3][0])+100<<10, pending)
	require.Equal(t, 7, b.ClosedForMemory(), "the other shards' aggregates")
	require.Len(t, c.out, 8, "the others, and shard 3's before the large record")
	require.NoError(t, b.FlushAll(c.emit))
	next := make([]int, 8)
	for _, e := range c.out {
		recs, err := DecodeKinesisRecord(e.Agg.PartitionKey, e.Agg.ExplicitHashKey, e.Data)
		require.NoError(t, err)
		for _, r := range recs {
			s := int(binary.BigEndian.Uint32(r.Data))
			require.Equal(t, next[s], int(binary.BigEndian.Uint32(r.Data[4:])))
			next[s]++
		}
	}
	require.Equal(t, []int{1, 1, 1, 2, 1, 1, 1, 1}, next)
	require.LessOrEqual(t, retainedNow(t, b), 32<<10, "the large record's buffer is not kept")
}

func TestBuilder_EmitErrorWhileClosingForMemoryAddsNothing(t *testing.T) {
	const shards = 100
	m := evenShards(t, shards)
	keys := keysPerShard(t, m, 1)
	b, err := NewBuilder(Config{MaxBytes: 8 << 10, MaxPendingBytes: 64 << 10}, m)
	require.NoError(t, err)
	var c collector
	errSpool := errors.New("spool closed")
	fail := false
	emit := func(g int, a *Aggregate) error {
		if fail {
			return errSpool
		}
		return c.emit(g, a)
	}
	seq := make([]int, shards)
	failed := 0
	for i := range 20 * shards {
		s := i % shards
		fail = i%37 == 36 // now and then, the spool refuses
		r := Record{PartitionKey: keys[s][0], Data: seqRecord(s, seq[s], 300)}
		nBefore, pBefore := b.Pending()
		_, err := b.Add(r, t0, emit)
		if err != nil {
			require.ErrorIs(t, err, errSpool)
			n, p := b.Pending()
			require.Equal(t, nBefore, n, "nothing added")
			require.Equal(t, pBefore, p)
			failed++
			fail = false
			_, err = b.Add(r, t0, emit) // the caller tries again
		}
		require.NoError(t, err)
		seq[s]++
		require.Equal(t, retainedNow(t, b), b.RetainedBytes())
	}
	require.Positive(t, failed, "some closes for memory failed")
	require.NoError(t, b.FlushAll(emit))
	checkAllOnceInOrder(t, c.out, shards, 20, func(s int) int { return s })
}

func TestBuilder_ClosingForMemoryReusesBuffers(t *testing.T) {
	const shards = 1000
	m := evenShards(t, shards)
	keys := keysPerShard(t, m, 1)
	b, err := NewBuilder(Config{MaxBytes: 16 << 10, MaxPendingBytes: 512 << 10}, m)
	require.NoError(t, err)
	data := seqRecord(0, 0, 200)
	var sink []byte
	emit := func(_ int, a *Aggregate) error {
		sink = a.AppendKinesisData(sink[:0])
		return nil
	}
	i := 0
	add := func() {
		if _, err := b.Add(Record{PartitionKey: keys[i%shards][0], Data: data}, t0, emit); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range 20 * shards {
		add()
	}
	closed := b.ClosedForMemory()
	allocs := testing.AllocsPerRun(20*shards, add)
	require.Greater(t, b.ClosedForMemory(), closed, "closing for memory all along")
	require.Less(t, allocs, 0.05, "allocations per record")
}

func TestBuilder_KeyTablesCountAgainstTheBound(t *testing.T) {
	// A new key per record: the key tables (and their maps) grow with the
	// aggregates, and are counted with the buffers.
	const bound = 128 << 10
	for _, shards := range []*ShardMap{evenShards(t, 16), nil} {
		b, err := NewBuilder(Config{MaxBytes: 32 << 10, MaxPendingBytes: bound, MaxGroups: 64}, shards)
		require.NoError(t, err)
		var c collector
		for i := range 20000 {
			r := Record{PartitionKey: fmt.Sprintf("unique-%d", i), Data: seqRecord(0, i, 20)}
			if shards == nil {
				r.ExplicitHashKey = fmt.Sprint(i % 40) // 40 groups, each growing
			}
			_, err := b.Add(r, t0, c.emit)
			require.NoError(t, err)
			_, pending := b.Pending()
			require.LessOrEqual(t, pending, bound)
			retained := retainedNow(t, b)
			require.Equal(t, retained, b.RetainedBytes())
			require.LessOrEqual(t, retained, bound)
		}
		require.Positive(t, b.ClosedForMemory())
		require.NoError(t, b.FlushAll(c.emit))
		require.LessOrEqual(t, retainedNow(t, b), bound)
		n := 0
		for _, e := range c.out {
			recs, err := DecodeKinesisRecord(e.Agg.PartitionKey, e.Agg.ExplicitHashKey, e.Data)
			require.NoError(t, err)
			for _, r := range recs {
				require.Equal(t, fmt.Sprintf("unique-%d", binary.BigEndian.Uint32(r.Data[4:])), r.PartitionKey)
			}
			n += len(recs)
		}
		require.Equal(t, 20000, n)
	}
}

// Records round-robin over more shards than full aggregates fit: the bound
// closes aggregates early, but they still hold many records each. Closing
// the oldest is closing the next shard to get a record; had the new
// aggregate taken the closed one's large buffers, memory would stay full
// and every aggregate would be closed before its second record.
func TestBuilder_RoundRobinUnderTheBoundStillAggregates(t *testing.T) {
	const (
		shards = 200
		rounds = 100
		bound  = 1 << 20
	)
	m := evenShards(t, shards)
	keys := keysPerShard(t, m, 1)
	b, err := NewBuilder(Config{MaxBytes: 64 << 10, MaxPendingBytes: bound}, m)
	require.NoError(t, err)
	var c collector
	for round := range rounds {
		for s := range shards {
			_, err := b.Add(Record{PartitionKey: keys[s][0], Data: seqRecord(s, round, 500)}, t0, c.emit)
			require.NoError(t, err)
			require.LessOrEqual(t, b.RetainedBytes(), bound)
		}
	}
	require.NoError(t, b.FlushAll(c.emit))
	checkAllOnceInOrder(t, c.out, shards, rounds, func(s int) int { return s })
	perAggregate := float64(shards*rounds) / float64(len(c.out))
	t.Logf("%d aggregates, %.1f records each, %d closed early", len(c.out), perAggregate, b.ClosedForMemory())
	// 1 MiB over 200 shards is 5 KiB each, 10 records of 500 bytes; the
	// buffers' doubling costs up to half of it.
	require.Greater(t, perAggregate, 4.0)
}
