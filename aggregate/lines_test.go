package aggregate

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type userRec struct {
	pk, ehk, data string
}

func forEachAll(t *testing.T, a *Aggregate) []userRec {
	t.Helper()
	var out []userRec
	require.NoError(t, ForEach(a, func(pk, ehk, data []byte) error {
		out = append(out, userRec{string(pk), string(ehk), string(data)})
		return nil
	}))
	return out
}

// A FramingLines Builder closes aggregates where a FramingKPL one does, holds
// the same records with the same keys, and its aggregates turn into exactly
// the KPL records the KPL Builder makes: the framing is a cost choice, never
// a change of what is delivered.
func TestLines_SameAggregatesAsKPL(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 15))
	rounds := 40
	if testing.Short() {
		rounds = 8
	}
	sawLines, sawConverted := false, false
	for round := range rounds {
		cfg := Config{MaxBytes: 200 + r.IntN(20_000), MaxRecords: 1 + r.IntN(200)}
		lcfg := cfg
		lcfg.Framing = FramingLines
		kb, err := NewBuilder(cfg, allShards(t))
		require.NoError(t, err)
		lb, err := NewBuilder(lcfg, allShards(t))
		require.NoError(t, err)
		var kc, lc collector
		// Mostly one key per stretch (the random partition key policy),
		// sometimes another key, an explicit hash key or a line break.
		key := "k0"
		now := t0
		for i := range 400 {
			if r.IntN(40) == 0 {
				key = fmt.Sprint("k", i)
			}
			rec := Record{PartitionKey: key, Data: []byte(fmt.Sprintf("line %d %s", i, randomUnicode(r, r.IntN(30)))), JSONObject: r.IntN(8) != 0}
			switch r.IntN(60) {
			case 0:
				rec.PartitionKey = fmt.Sprint("other-", r.IntN(3))
			case 1:
				rec.ExplicitHashKey = fmt.Sprint(r.IntN(1000))
			case 2:
				rec.Data = append(rec.Data, "\nat frame 2"...)
			case 3:
				rec.Data = nil
			}
			_, kerr := kb.Add(rec, now, kc.emit)
			_, lerr := lb.Add(rec, now, lc.emit)
			require.Equal(t, kerr, lerr)
			if r.IntN(100) == 0 {
				now = now.Add(time.Second)
				require.NoError(t, kb.FlushOlder(now, kc.emit))
				require.NoError(t, lb.FlushOlder(now, lc.emit))
			}
			kr, kbytes := kb.Pending()
			lr, lbytes := lb.Pending()
			require.Equal(t, kr, lr)
			require.Equal(t, kbytes, lbytes, "sizes are counted as KPL in both framings")
		}
		require.NoError(t, kb.FlushAll(kc.emit))
		require.NoError(t, lb.FlushAll(lc.emit))

		require.Len(t, lc.out, len(kc.out), "round %d", round)
		for i := range kc.out {
			k, l := kc.out[i].Agg, lc.out[i].Agg
			require.Equal(t, k.Count, l.Count)
			require.Equal(t, k.JSONObjects, l.JSONObjects)
			require.Equal(t, forEachAll(t, &k), forEachAll(t, &l), "round %d aggregate %d", round, i)
			if l.Aggregated && l.Framing == FramingLines {
				sawLines = true
				require.Equal(t, k, l.KPL(), "KPL turns it into the KPL Builder's aggregate")
				require.Equal(t, len(l.PartitionKey)-len(k.PartitionKey)+k.Size(), l.Size())
				recs, err := DecodeKinesisRecord(l.PartitionKey, l.ExplicitHashKey, l.AppendKinesisData(nil))
				require.NoError(t, err)
				require.Len(t, recs, l.Count)
				continue
			}
			if k.Aggregated {
				sawConverted = true
			}
			require.Equal(t, k, l, "round %d aggregate %d", round, i)
		}
	}
	require.True(t, sawLines, "no aggregate in the newline framing")
	require.True(t, sawConverted, "no aggregate turned into KPL")
}

func TestLines_RecordsThatBreakTheFramingTurnItIntoKPL(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second Record
	}{
		{"another partition key", Record{PartitionKey: "k2", Data: []byte("b")}},
		{"an explicit hash key", Record{PartitionKey: "k", ExplicitHashKey: "5", Data: []byte("b")}},
		{"a line break", Record{PartitionKey: "k", Data: []byte("b\nc")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBuilder(Config{Framing: FramingLines}, allShards(t))
			require.NoError(t, err)
			var c collector
			_, err = b.Add(Record{PartitionKey: "k", Data: []byte("a")}, t0, c.emit)
			require.NoError(t, err)
			_, err = b.Add(Record{PartitionKey: "k", Data: []byte("a2")}, t0, c.emit)
			require.NoError(t, err)
			_, err = b.Add(tc.second, t0, c.emit)
			require.NoError(t, err)
			require.NoError(t, b.FlushAll(c.emit))
			var all []userRec
			for i := range c.out {
				a := c.out[i].Agg
				if a.Aggregated {
					require.Equal(t, FramingKPL, a.Framing)
				}
				all = append(all, forEachAll(t, &a)...)
			}
			want := []userRec{{"k", "", "a"}, {"k", "", "a2"}, {tc.second.PartitionKey, tc.second.ExplicitHashKey, string(tc.second.Data)}}
			require.Equal(t, want, all)
		})
	}
}

func TestLines_OneRecordIsPlainAndJSONObjectsNeedsEveryRecord(t *testing.T) {
	b, err := NewBuilder(Config{Framing: FramingLines}, allShards(t))
	require.NoError(t, err)
	var c collector
	_, err = b.Add(Record{PartitionKey: "k", Data: []byte(`{"a":1}`), JSONObject: true}, t0, c.emit)
	require.NoError(t, err)
	require.NoError(t, b.FlushAll(c.emit))
	_, err = b.Add(Record{PartitionKey: "k", Data: []byte(`{"a":1}`), JSONObject: true}, t0, c.emit)
	require.NoError(t, err)
	_, err = b.Add(Record{PartitionKey: "k", Data: []byte(`{"b":2}`), JSONObject: true}, t0, c.emit)
	require.NoError(t, err)
	require.NoError(t, b.FlushAll(c.emit))
	_, err = b.Add(Record{PartitionKey: "k", Data: []byte(`{"a":1}`), JSONObject: true}, t0, c.emit)
	require.NoError(t, err)
	_, err = b.Add(Record{PartitionKey: "k", Data: []byte(`text`)}, t0, c.emit)
	require.NoError(t, err)
	require.NoError(t, b.FlushAll(c.emit))

	require.Len(t, c.out, 3)
	require.Equal(t, Aggregate{PartitionKey: "k", Body: []byte(`{"a":1}`), Count: 1, JSONObjects: true}, c.out[0].Agg)
	two := c.out[1].Agg
	require.NotNil(t, two.BuiltFor, "an aggregate of 2+ records says which shard it was built for")
	two.BuiltFor = nil
	require.Equal(t, Aggregate{PartitionKey: "k", Aggregated: true, Framing: FramingLines, Body: []byte("{\"a\":1}\n{\"b\":2}\n"), Count: 2, JSONObjects: true}, two)
	require.False(t, c.out[2].Agg.JSONObjects)
}

func TestLines_MalformedBodyDeliversNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    Aggregate
	}{
		{"no final line break", Aggregate{PartitionKey: "k", Aggregated: true, Framing: FramingLines, Body: []byte("a\nb"), Count: 2}},
		{"count mismatch", Aggregate{PartitionKey: "k", Aggregated: true, Framing: FramingLines, Body: []byte("a\nb\n"), Count: 3}},
		{"empty", Aggregate{PartitionKey: "k", Aggregated: true, Framing: FramingLines, Count: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := ForEach(&tc.a, func(_, _, _ []byte) error { calls++; return nil })
			require.ErrorIs(t, err, ErrMalformed)
			require.Zero(t, calls)
		})
	}
}

func TestLines_ForEachDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	a := Aggregate{PartitionKey: "k", Aggregated: true, Framing: FramingLines, Body: []byte("a\nbb\nccc\n"), Count: 3}
	n := 0
	fn := func(_, _, data []byte) error { n += len(data); return nil }
	allocs := testing.AllocsPerRun(100, func() { _ = ForEach(&a, fn) })
	require.Zero(t, allocs)
	require.Equal(t, 101*6, n)
}

// Closes tells exactly whether Add closes an aggregate before taking r.
func TestCloses_PredictsAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 16))
	for round := range 20 {
		m := allShards(t)
		if round%2 == 1 {
			m = evenShards(t, 4)
		}
		cfg := Config{MaxBytes: 200 + r.IntN(5000), MaxRecords: 2 + r.IntN(50), Framing: Framing(round % 3 % 2)}
		b, err := NewBuilder(cfg, m)
		require.NoError(t, err)
		for range 500 {
			rec := randomRecord(r, m, 2*cfg.MaxBytes)
			if r.IntN(3) > 0 {
				rec.PartitionKey, rec.ExplicitHashKey = "same", "" // most records share a key
			}
			predicted := b.Closes(rec)
			emitted := false
			_, err := b.Add(rec, t0, func(int, *Aggregate) error { emitted = true; return nil })
			if err != nil {
				require.False(t, predicted)
				continue
			}
			require.Equal(t, emitted, predicted, "round %d", round)
		}
	}
}
