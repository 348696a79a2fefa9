package aggregate

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewShardMap_RefusesMapsThatCannotRouteRecords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shards []Shard
		msg    string
	}{
		{"no shards", nil, "no shards"},
		{"end before start", []Shard{{ID: "s", Start: HashKey{Lo: 5}, End: HashKey{Lo: 4}}}, "before start"},
		{"overlap, as with a closed parent shard", []Shard{
			{ID: "parent", Start: HashKey{}, End: MaxHashKey},
			{ID: "child", Start: HashKey{Hi: 1}, End: MaxHashKey},
		}, "overlap"},
		{"shared boundary", []Shard{
			{ID: "s0", Start: HashKey{}, End: HashKey{Lo: 10}},
			{ID: "s1", Start: HashKey{Lo: 10}, End: MaxHashKey},
		}, "overlap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewShardMap(tc.shards)
			require.ErrorContains(t, err, tc.msg)
		})
	}
}

func TestShardMap_LookupFindsTheShardHoldingTheKeyAndReportsGaps(t *testing.T) {
	// Given out of order, with a gap from 21 to 29.
	m, err := NewShardMap([]Shard{
		{ID: "high", Start: HashKey{Lo: 30}, End: MaxHashKey},
		{ID: "low", Start: HashKey{}, End: HashKey{Lo: 10}},
		{ID: "mid", Start: HashKey{Lo: 11}, End: HashKey{Lo: 20}},
	})
	require.NoError(t, err)
	require.Equal(t, 3, m.Len())
	require.Equal(t, "low", m.Shard(0).ID)
	require.Equal(t, "high", m.Shard(2).ID)
	for _, tc := range []struct {
		key  HashKey
		want int
		ok   bool
	}{
		{HashKey{}, 0, true},
		{HashKey{Lo: 10}, 0, true},
		{HashKey{Lo: 11}, 1, true},
		{HashKey{Lo: 20}, 1, true},
		{HashKey{Lo: 21}, 0, false},
		{HashKey{Lo: 29}, 0, false},
		{HashKey{Lo: 30}, 2, true},
		{HashKey{Hi: 1}, 2, true},
		{MaxHashKey, 2, true},
	} {
		got, ok := m.Lookup(tc.key)
		require.Equal(t, tc.ok, ok, tc.key.String())
		require.Equal(t, tc.want, got, tc.key.String())
	}
}

func TestShardMap_LookupAgreesWithALinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 50 {
		m := randomShardMap(t, r)
		for range 200 {
			h := HashKey{Hi: r.Uint64(), Lo: r.Uint64()}
			want, wantOK := -1, false
			for i := range m.Len() {
				s := m.Shard(i)
				if s.Start.Cmp(h) <= 0 && h.Cmp(s.End) <= 0 {
					want, wantOK = i, true
				}
			}
			got, ok := m.Lookup(h)
			require.Equal(t, wantOK, ok)
			if ok {
				require.Equal(t, want, got)
			}
		}
	}
}

// randomShardMap returns a map of 1 to 64 shards covering the whole key space
// with uneven ranges (as after splits and merges).
func randomShardMap(t testing.TB, r *rand.Rand) *ShardMap {
	t.Helper()
	n := 1 + r.IntN(64)
	cuts := map[HashKey]bool{}
	for len(cuts) < n-1 {
		h := HashKey{Hi: r.Uint64(), Lo: r.Uint64()}
		if h != (HashKey{}) {
			cuts[h] = true
		}
	}
	starts := []HashKey{{}}
	for h := range cuts {
		starts = append(starts, h)
	}
	slices.SortFunc(starts, HashKey.Cmp)
	shards := make([]Shard, n)
	for i := range starts {
		shards[i] = Shard{ID: shardID(i), Start: starts[i], End: MaxHashKey}
		if i+1 < n {
			shards[i].End = dec(starts[i+1])
		}
	}
	r.Shuffle(len(shards), func(i, j int) { shards[i], shards[j] = shards[j], shards[i] })
	m, err := NewShardMap(shards)
	require.NoError(t, err)
	return m
}
