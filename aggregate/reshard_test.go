package aggregate

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// buildAll packs recs with a Builder on m and returns the Kinesis records.
func buildAll(t *testing.T, m *ShardMap, recs []Record) []emitted {
	t.Helper()
	b, err := NewBuilder(Config{MaxBytes: MaxRecordSize, MaxRecords: 10_000}, m)
	require.NoError(t, err)
	var c collector
	for _, r := range recs {
		_, err := b.Add(r, t0, c.emit)
		require.NoError(t, err)
	}
	require.NoError(t, b.FlushAll(c.emit))
	return c.out
}

func randomRecords(r *rand.Rand, n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Data: fmt.Appendf(nil, "line %d", i), PartitionKey: fmt.Sprintf("k%d", r.IntN(50))}
		if r.IntN(5) == 0 {
			recs[i].ExplicitHashKey = HashKey{Hi: r.Uint64(), Lo: r.Uint64()}.String()
		}
	}
	return recs
}

// coveredByHand checks every decoded sub-record against shard i.
func coveredByHand(t *testing.T, m *ShardMap, e emitted, i int) bool {
	t.Helper()
	recs, err := DecodeKinesisRecord(e.Agg.PartitionKey, e.Agg.ExplicitHashKey, e.Data)
	require.NoError(t, err)
	for _, r := range recs {
		if !m.Shard(i).Contains(hashOf(t, r)) {
			return false
		}
	}
	return true
}

func TestCovers_AggregatesBuiltOnTheMapAreCovered_OlderMapsAreCaught(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 1))
	old := evenShards(t, 2)
	cur := evenShards(t, 8) // every old shard is split in four
	sawUncovered := false
	for range 20 {
		recs := randomRecords(r, 300)
		for _, e := range buildAll(t, cur, recs) {
			i, err := cur.Route(&e.Agg)
			require.NoError(t, err)
			ok, err := cur.Covers(&e.Agg, i)
			require.NoError(t, err)
			require.True(t, ok, "an aggregate built on the map must be covered")
			exact := e.Agg
			exact.BuiltFor = nil // read from the spool: its records are read
			ok, err = cur.Covers(&exact, i)
			require.NoError(t, err)
			require.True(t, ok, "an aggregate built on the map must be covered")
		}
		for _, e := range buildAll(t, old, recs) {
			i, err := cur.Route(&e.Agg)
			require.NoError(t, err)
			ok, err := cur.Covers(&e.Agg, i)
			require.NoError(t, err)
			require.Equal(t, coveredByHand(t, cur, e, i), ok)
			sawUncovered = sawUncovered || !ok
			// Another shard never covers it, unless plain.
			other := (i + 1) % cur.Len()
			ok, err = cur.Covers(&e.Agg, other)
			require.NoError(t, err)
			require.Equal(t, coveredByHand(t, cur, e, other), ok)
		}
	}
	require.True(t, sawUncovered, "aggregates built on a map of 2 shards must straddle shards of a map of 8")
}

func TestCovers_MalformedBodyIsAnError(t *testing.T) {
	m := evenShards(t, 2)
	a := Aggregate{PartitionKey: "a", ExplicitHashKey: "0", Aggregated: true, Body: []byte{0x1a, 0x05, 0x08}, Count: 1}
	_, err := m.Covers(&a, 0)
	require.ErrorIs(t, err, ErrMalformed)
	bad := pb(nil).str(1, "pk").str(2, "not-a-number").bytes(3, pb(nil).varint(1, 0).varint(2, 0).bytes(3, []byte("x")))
	a = Aggregate{PartitionKey: "a", ExplicitHashKey: "0", Aggregated: true, Body: bad, Count: 1}
	_, err = m.Covers(&a, 0)
	require.ErrorIs(t, err, ErrExplicitHashKey)
}

// Covers first checks the key tables alone; a table key outside the shard
// that no record routes by (a partition key of records that all have an
// explicit hash key) must not make it refuse a covered aggregate, and a key
// inside must not hide a record outside.
func TestCovers_UnusedTableKeysDoNotDecide(t *testing.T) {
	m := evenShards(t, 2)
	keyIn := func(shard int) string {
		for i := 0; ; i++ {
			pk := fmt.Sprintf("k%d", i)
			if j, _ := m.RouteKeys(pk, ""); j == shard {
				return pk
			}
		}
	}
	in0, in1 := keyIn(0), keyIn(1)
	ehk0 := m.Shard(0).Start.String()
	ehk1 := m.Shard(1).Start.String()
	rec := func(pkIdx uint64, ehkIdx int) pb {
		r := pb(nil).varint(1, pkIdx)
		if ehkIdx >= 0 {
			r = r.varint(2, uint64(ehkIdx))
		}
		return pb(nil).bytes(3, r.bytes(3, []byte("x")))
	}
	for _, tc := range []struct {
		name string
		body pb
		want bool
	}{
		{"all keys in", append(pb(nil).str(1, in0), append(rec(0, -1), rec(0, -1)...)...), true},
		{"partition key out, unused: records by explicit hash key in", append(pb(nil).str(1, in1).str(2, ehk0), append(rec(0, 0), rec(0, 0)...)...), true},
		{"partition key in, records by explicit hash key out", append(pb(nil).str(1, in0).str(2, ehk1), append(rec(0, -1), rec(0, 0)...)...), false},
		{"second partition key out and used", append(pb(nil).str(1, in0).str(1, in1), append(rec(0, -1), rec(1, -1)...)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Aggregate{PartitionKey: "a", ExplicitHashKey: ehk0, Aggregated: true, Body: tc.body, Count: 2}
			ok, err := m.Covers(&a, 0)
			require.NoError(t, err)
			require.Equal(t, tc.want, ok)
		})
	}
	// A record naming a key outside the tables is malformed, whatever the
	// tables hold.
	a := Aggregate{PartitionKey: "a", ExplicitHashKey: ehk0, Aggregated: true, Body: append(pb(nil).str(1, in0), rec(1, -1)...), Count: 1}
	_, err := m.Covers(&a, 0)
	require.ErrorIs(t, err, ErrMalformed)
}

// A Builder with a shard map notes on each aggregate the shard it grouped
// its records by; Covers trusts it when that shard's range lies in the
// target's (no record read) and reads the records otherwise. The entry
// encoding does not carry it.
func TestBuiltFor_IsTheGroupsShardAndLetsCoversSkipTheRecords(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 7))
	m := evenShards(t, 4)
	merged, err := NewShardMap([]Shard{
		{ID: "m01", Start: m.Shard(0).Start, End: m.Shard(1).End},
		{ID: "m23", Start: m.Shard(2).Start, End: m.Shard(3).End},
	})
	require.NoError(t, err)
	aggregates := 0
	for _, e := range buildAll(t, m, randomRecords(r, 2000)) {
		if !e.Agg.Aggregated {
			require.Nil(t, e.Agg.BuiltFor)
			continue
		}
		aggregates++
		require.NotNil(t, e.Agg.BuiltFor)
		require.Equal(t, m.Shard(e.Group), *e.Agg.BuiltFor)
		require.True(t, coveredByHand(t, m, e, e.Group))
		parsed, err := ParseEntry(e.Agg.AppendEntry(nil))
		require.NoError(t, err)
		require.Nil(t, parsed.BuiltFor, "not in the entry")

		// After a merge the parent's range lies in the child's: covered,
		// as reading the records says.
		j, err := merged.Route(&e.Agg)
		require.NoError(t, err)
		ok, err := merged.Covers(&e.Agg, j)
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, coveredByHand(t, merged, e, j))
	}
	require.Positive(t, aggregates)

	// Trusted: records not read (this body would not parse)...
	garbage := Aggregate{PartitionKey: "a", ExplicitHashKey: "0", Aggregated: true, Body: []byte{0x1a, 0x05, 0x08}, Count: 2}
	inside := m.Shard(0)
	garbage.BuiltFor = &inside
	ok, err := merged.Covers(&garbage, 0)
	require.NoError(t, err)
	require.True(t, ok)
	// ...unless the range is not within the target's: then they are.
	whole := Shard{ID: "all", End: MaxHashKey}
	garbage.BuiltFor = &whole
	_, err = merged.Covers(&garbage, 0)
	require.ErrorIs(t, err, ErrMalformed)
}

func TestSplit_ReaggregatesAgainstTheNewMapKeepingEveryRecordInOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 2))
	for range 10 {
		old := randomShardMap(t, r)
		cur := randomShardMap(t, r)
		recs := randomRecords(r, 1+r.IntN(400))
		var all []Record
		for _, e := range buildAll(t, old, recs) {
			// Per new shard, the old aggregate's records in their order.
			in, err := DecodeKinesisRecord(e.Agg.PartitionKey, e.Agg.ExplicitHashKey, e.Data)
			require.NoError(t, err)
			want := map[int][]Record{}
			for _, rec := range in {
				i, ok := cur.Lookup(hashOf(t, rec))
				require.True(t, ok)
				want[i] = append(want[i], rec)
			}
			got := map[int][]Record{}
			err = Split(&e.Agg, cur, func(a *Aggregate) error {
				i, err := cur.Route(a)
				require.NoError(t, err)
				ok, err := cur.Covers(a, i)
				require.NoError(t, err)
				require.True(t, ok)
				require.LessOrEqual(t, a.Size(), max(e.Agg.Size(), DefaultMaxBytes))
				dec, err := DecodeKinesisRecord(a.PartitionKey, a.ExplicitHashKey, a.AppendKinesisData(nil))
				require.NoError(t, err)
				for _, d := range dec {
					d.Data = append([]byte(nil), d.Data...)
					got[i] = append(got[i], d)
				}
				return nil
			})
			require.NoError(t, err)
			require.Equal(t, want, got)
			for _, rs := range got {
				all = append(all, rs...)
			}
		}
		require.ElementsMatch(t, recs, all)
	}
}

func TestSplit_PlainRecordPassesThrough(t *testing.T) {
	m := evenShards(t, 4)
	a := Aggregate{PartitionKey: "pk", Body: []byte("data"), Count: 1}
	n := 0
	require.NoError(t, Split(&a, m, func(got *Aggregate) error {
		n++
		require.Equal(t, a, *got)
		return nil
	}))
	require.Equal(t, 1, n)
}

func TestSplitter_ReusedAcrossAggregatesAndAfterAnError(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 3))
	old, cur := evenShards(t, 3), evenShards(t, 7)
	s, err := NewSplitter(cur)
	require.NoError(t, err)
	require.Same(t, cur, s.Map())
	collect := func(split func(*Aggregate, func(*Aggregate) error) error, a *Aggregate) ([]string, error) {
		var out []string
		err := split(a, func(p *Aggregate) error {
			out = append(out, string(p.AppendKinesisData(nil))+"|"+p.PartitionKey+"|"+p.ExplicitHashKey)
			return nil
		})
		return out, err
	}
	// A bad key after good records: refused in the middle of the split.
	rec := func(pk uint64, data string) []byte { return pb(nil).varint(1, pk).bytes(3, []byte(data)) }
	body := pb(nil).str(1, "good").str(1, "bad\xff").bytes(3, rec(0, "x")).bytes(3, rec(0, "y")).bytes(3, rec(1, "z"))
	malformed := Aggregate{PartitionKey: "a", ExplicitHashKey: "0", Aggregated: true, Body: body, Count: 3}
	for k, e := range buildAll(t, old, randomRecords(r, 2000)) {
		want, err := collect(func(a *Aggregate, emit func(*Aggregate) error) error { return Split(a, cur, emit) }, &e.Agg)
		require.NoError(t, err)
		require.NoError(t, s.Split(&e.Agg, func(*Aggregate) error { return nil }))
		gotPieces, err := collect(s.Split, &e.Agg)
		require.NoError(t, err)
		require.Equal(t, want, gotPieces, "aggregate %d", k)
		_, err = collect(s.Split, &malformed)
		require.ErrorIs(t, err, ErrPartitionKey)
	}
}
