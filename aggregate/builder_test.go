package aggregate

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBuilder_TwoRecordsWithDistinctKeysEncodeToHandCheckedBytes(t *testing.T) {
	// Hand-checked against messages.proto:
	//   0a 03 "pk1"                 partition_key_table[0]
	//   0a 03 "pk2"                 partition_key_table[1]
	//   1a 09 08 00 1a 05 "hello"   records[0]: pk index 0 (required, so present), data
	//   1a 09 08 01 1a 05 "world"   records[1]: pk index 1, data
	const wantBody = "0a03706b310a03706b321a0908001a0568656c6c6f1a0908011a05776f726c64"
	const wantMD5 = "87c22af1ed18e292eb55b018413a3cff"

	b, err := NewBuilder(Config{}, allShards(t))
	require.NoError(t, err)
	var c collector
	_, err = b.Add(Record{PartitionKey: "pk1", Data: []byte("hello")}, t0, c.emit)
	require.NoError(t, err)
	_, err = b.Add(Record{PartitionKey: "pk2", Data: []byte("world")}, t0, c.emit)
	require.NoError(t, err)
	require.Empty(t, c.out, "nothing closes before a flush")
	require.NoError(t, b.FlushAll(c.emit))

	require.Len(t, c.out, 1)
	a := c.out[0].Agg
	require.True(t, a.Aggregated)
	require.Equal(t, 2, a.Count)
	require.Equal(t, "a", a.PartitionKey)
	require.Equal(t, PartitionKeyHash("pk1").String(), a.ExplicitHashKey, "the first sub-record's hash key")
	require.Equal(t, wantBody, hex.EncodeToString(a.Body))
	require.Equal(t, "f3899ac2"+wantBody+wantMD5, hex.EncodeToString(c.out[0].Data))
	require.Equal(t, len(c.out[0].Data)+1, a.Size())
}

func TestBuilder_RequiredFieldsAreEmittedForIndexZeroAndEmptyData(t *testing.T) {
	b, err := NewBuilder(Config{}, allShards(t))
	require.NoError(t, err)
	var c collector
	for range 2 {
		_, err = b.Add(Record{PartitionKey: "k", Data: nil}, t0, c.emit)
		require.NoError(t, err)
	}
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 1)
	// One key, de-duplicated; each record has "08 00" (index 0) and "1a 00"
	// (empty data), which a proto3-style encoder would drop.
	require.Equal(t, "0a016b"+"1a04080"+"01a00"+"1a04080"+"01a00", hex.EncodeToString(c.out[0].Agg.Body))
}

func TestBuilder_KeysAreDeduplicatedAndExplicitHashKeysIndexed(t *testing.T) {
	b, err := NewBuilder(Config{}, allShards(t))
	require.NoError(t, err)
	var c collector
	recs := []Record{
		{PartitionKey: "p", Data: []byte("1")},
		{PartitionKey: "q", Data: []byte("2"), ExplicitHashKey: "0"},
		{PartitionKey: "p", Data: []byte("3"), ExplicitHashKey: "0"},
		{PartitionKey: "q", Data: []byte("4"), ExplicitHashKey: "7"},
	}
	for _, r := range recs {
		_, err := b.Add(r, t0, c.emit)
		require.NoError(t, err)
	}
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 1)
	want := "0a0170" + "0a0171" + "120130" + "120137" + // tables: p q | 0 7
		"1a05" + "0800" + "1a0131" + // p, no EHK
		"1a07" + "0801" + "1000" + "1a0132" + // q, EHK 0
		"1a07" + "0800" + "1000" + "1a0133" + // p, EHK 0
		"1a07" + "0801" + "1001" + "1a0134" // q, EHK 7
	require.Equal(t, want, hex.EncodeToString(c.out[0].Agg.Body))
	got, err := Decode(c.out[0].Data)
	require.NoError(t, err)
	require.Equal(t, recs, got)
}

func TestBuilder_SingleRecordIsSentPlainWithItsOwnKeys(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shards bool
		ehk    string
	}{
		{"by shard, no explicit hash key", true, ""},
		{"by shard, explicit hash key", true, "12345"},
		{"by key, no explicit hash key", false, ""},
		{"by key, explicit hash key", false, "12345"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m *ShardMap
			if tc.shards {
				m = allShards(t)
			}
			b, err := NewBuilder(Config{}, m)
			require.NoError(t, err)
			var c collector
			_, err = b.Add(Record{PartitionKey: "key", ExplicitHashKey: tc.ehk, Data: []byte("data")}, t0, c.emit)
			require.NoError(t, err)
			require.NoError(t, b.FlushAll(c.emit))
			require.Len(t, c.out, 1)
			require.Equal(t, Aggregate{PartitionKey: "key", ExplicitHashKey: tc.ehk, Body: []byte("data"), Count: 1}, c.out[0].Agg)
			require.Equal(t, []byte("data"), c.out[0].Data, "no magic, no MD5")
			require.Equal(t, len("key")+len("data"), c.out[0].Agg.Size())
		})
	}
}

func TestBuilder_AggregateExplicitHashKeyIsTheFirstRecordsHashKey(t *testing.T) {
	for _, tc := range []struct {
		name     string
		firstEHK string
		want     string
	}{
		{"first record hashed by partition key", "", PartitionKeyHash("first").String()},
		{"first record with explicit hash key 0", "0", "0"},
		{"first record with the largest explicit hash key", "340282366920938463463374607431768211455", "340282366920938463463374607431768211455"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBuilder(Config{}, allShards(t))
			require.NoError(t, err)
			var c collector
			_, err = b.Add(Record{PartitionKey: "first", ExplicitHashKey: tc.firstEHK, Data: []byte("1")}, t0, c.emit)
			require.NoError(t, err)
			_, err = b.Add(Record{PartitionKey: "second", Data: []byte("2")}, t0, c.emit)
			require.NoError(t, err)
			require.NoError(t, b.FlushAll(c.emit))
			require.Len(t, c.out, 1)
			require.Equal(t, "a", c.out[0].Agg.PartitionKey)
			require.Equal(t, tc.want, c.out[0].Agg.ExplicitHashKey)
		})
	}
}

func TestBuilder_SizeIsExactAfterEveryAdd(t *testing.T) {
	// Data lengths across varint boundaries, keys new and repeated.
	lens := []int{0, 1, 100, 127, 128, 129, 300, 16383, 16384, 2, 5}
	pks := []string{"a", "bb", strings.Repeat("k", 127), strings.Repeat("é", 100), "a", "bb"}
	ehks := []string{"", "0", "", "340282366920938463463374607431768211455", "", "0"}
	var recs []Record
	for i := range 40 {
		recs = append(recs, Record{
			PartitionKey:    pks[i%len(pks)],
			ExplicitHashKey: ehks[i%len(ehks)],
			Data:            bytes.Repeat([]byte{byte(i)}, lens[i%len(lens)]),
		})
	}
	for n := 1; n <= len(recs); n++ {
		b, err := NewBuilder(Config{MaxBytes: MaxRecordSize}, allShards(t))
		require.NoError(t, err)
		var c collector
		for _, r := range recs[:n] {
			_, err := b.Add(r, t0, c.emit)
			require.NoError(t, err)
		}
		require.Empty(t, c.out)
		records, size := b.Pending()
		require.Equal(t, n, records)
		require.NoError(t, b.FlushAll(c.emit))
		require.Len(t, c.out, 1)
		require.Equal(t, size, c.out[0].Agg.Size(), "after %d records", n)
		require.Equal(t, size, len(c.out[0].Agg.PartitionKey)+len(c.out[0].Data))
		got, err := Decode(c.out[0].Data)
		require.NoError(t, err)
		if n == 1 {
			require.Equal(t, recs[0].Data, got[0].Data)
			continue
		}
		require.Equal(t, recs[:n], got)
		records, size = b.Pending()
		require.Zero(t, records)
		require.Zero(t, size)
	}
}

func TestBuilder_AggregateClosesOnMaxBytesBeforeTheRecordThatDoesNotFitJoins(t *testing.T) {
	for _, maxBytes := range []int{100, 1000, DefaultMaxBytes, 200_000} {
		t.Run(fmt.Sprint(maxBytes), func(t *testing.T) {
			b, err := NewBuilder(Config{MaxBytes: maxBytes, MaxRecords: 1 << 20}, allShards(t))
			require.NoError(t, err)
			var c collector
			var all []Record
			for i := range 3000 {
				r := Record{PartitionKey: fmt.Sprintf("pk-%d", i%7), Data: bytes.Repeat([]byte("x"), i%61)}
				all = append(all, r)
				before := len(c.out)
				_, pendingBytes := b.Pending()
				_, err := b.Add(r, t0, c.emit)
				require.NoError(t, err)
				if len(c.out) > before {
					// The closed aggregate is the one pending before Add, and
					// the new record would have taken it past the limit.
					require.Len(t, c.out, before+1)
					require.Equal(t, pendingBytes, c.out[before].Agg.Size())
					_, now := b.Pending()
					require.Equal(t, len(r.PartitionKey)+len(r.Data), now, "the record opened a new aggregate")
				}
			}
			require.NoError(t, b.FlushAll(c.emit))
			var got []Record
			for i, e := range c.out {
				require.LessOrEqual(t, e.Agg.Size(), maxBytes, "aggregate %d", i)
				recs, err := Decode(e.Data)
				require.NoError(t, err)
				require.Equal(t, e.Agg.Count, len(recs))
				if i < len(c.out)-1 {
					// Not the last: the next record did not fit.
					withNext := all[len(got) : len(got)+len(recs)+1]
					require.Greater(t, aggregateSize(t, withNext), maxBytes)
				}
				got = append(got, recs...)
			}
			require.Len(t, got, len(all))
			for i := range all {
				require.Equal(t, all[i].Data, got[i].Data)
			}
		})
	}
}

func TestBuilder_AggregateClosesOnMaxRecords(t *testing.T) {
	b, err := NewBuilder(Config{MaxRecords: 3}, allShards(t))
	require.NoError(t, err)
	var c collector
	for i := range 10 {
		_, err := b.Add(Record{PartitionKey: "k", Data: []byte{byte(i)}}, t0, c.emit)
		require.NoError(t, err)
	}
	require.NoError(t, b.FlushAll(c.emit))
	var counts []int
	for _, e := range c.out {
		counts = append(counts, e.Agg.Count)
	}
	require.Equal(t, []int{3, 3, 3, 1}, counts)
}

func TestBuilder_RecordLargerThanMaxBytesIsSentAloneAsAPlainRecord(t *testing.T) {
	b, err := NewBuilder(Config{}, allShards(t))
	require.NoError(t, err)
	var c collector
	big := bytes.Repeat([]byte("B"), 200_000)
	_, err = b.Add(Record{PartitionKey: "k", Data: []byte("small")}, t0, c.emit)
	require.NoError(t, err)
	_, err = b.Add(Record{PartitionKey: "k", Data: big}, t0, c.emit)
	require.NoError(t, err)
	_, err = b.Add(Record{PartitionKey: "k", Data: []byte("after")}, t0, c.emit)
	require.NoError(t, err)
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 3)
	require.Equal(t, []byte("small"), c.out[0].Data)
	require.Equal(t, Aggregate{PartitionKey: "k", Body: big, Count: 1}, c.out[1].Agg)
	require.Equal(t, []byte("after"), c.out[2].Data)
}

func TestBuilder_RecordOverTheStreamLimitIsRejectedForTheDeadLetterFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		size  int // data + partition key
		ok    bool
	}{
		{"default limit, exactly 1 MiB", 0, MaxRecordSize, true},
		{"default limit, 1 MiB + 1", 0, MaxRecordSize + 1, false},
		{"large-record stream, 10 MiB", MaxLargeRecordSize, MaxLargeRecordSize, true},
		{"large-record stream, 10 MiB + 1", MaxLargeRecordSize, MaxLargeRecordSize + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBuilder(Config{RecordLimit: tc.limit}, allShards(t))
			require.NoError(t, err)
			var c collector
			_, err = b.Add(Record{PartitionKey: "pk", Data: make([]byte, tc.size-2)}, t0, c.emit)
			if !tc.ok {
				require.ErrorIs(t, err, ErrRecordTooLarge)
				require.Contains(t, err.Error(), fmt.Sprint(tc.size))
				records, _ := b.Pending()
				require.Zero(t, records)
				return
			}
			require.NoError(t, err)
			require.NoError(t, b.FlushAll(c.emit))
			require.Len(t, c.out, 1)
			require.Equal(t, tc.size, c.out[0].Agg.Size())
		})
	}
}

func TestBuilder_InvalidKeysAreRejectedWithClearErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pk, ehk string
		want    error // nil: accepted
		msg     string
	}{
		{"empty partition key", "", "", ErrPartitionKey, "empty"},
		{"256 ASCII characters", strings.Repeat("k", 256), "", nil, ""},
		{"257 ASCII characters", strings.Repeat("k", 257), "", ErrPartitionKey, "257 characters"},
		{"256 four-byte characters", strings.Repeat("😀", 256), "", nil, ""},
		{"257 two-byte characters", strings.Repeat("é", 257), "", ErrPartitionKey, "257 characters"},
		{"invalid UTF-8", "a\xffb", "", ErrPartitionKey, "not valid UTF-8"},
		{"explicit hash key 0", "k", "0", nil, ""},
		{"explicit hash key 2^128-1", "k", "340282366920938463463374607431768211455", nil, ""},
		{"explicit hash key 2^128", "k", "340282366920938463463374607431768211456", ErrExplicitHashKey, "larger than 2^128-1"},
		{"explicit hash key negative", "k", "-1", ErrExplicitHashKey, "not a decimal integer"},
		{"explicit hash key with leading zero", "k", "01", ErrExplicitHashKey, "leading zero"},
		{"explicit hash key hex", "k", "0x10", ErrExplicitHashKey, ""},
		{"bad explicit hash key and bad partition key", "", "x", ErrExplicitHashKey, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range []*ShardMap{nil, allShards(t)} {
				b, err := NewBuilder(Config{}, m)
				require.NoError(t, err)
				var c collector
				_, err = b.Add(Record{PartitionKey: tc.pk, ExplicitHashKey: tc.ehk, Data: []byte("d")}, t0, c.emit)
				if tc.want == nil {
					require.NoError(t, err)
					continue
				}
				require.ErrorIs(t, err, tc.want)
				require.Contains(t, err.Error(), tc.msg)
				records, _ := b.Pending()
				require.Zero(t, records)
				require.Empty(t, c.out)
			}
		})
	}
}

func TestBuilder_RecordsAreGroupedByPredictedShard(t *testing.T) {
	m := evenShards(t, 4)
	b, err := NewBuilder(Config{}, m)
	require.NoError(t, err)
	require.Equal(t, 4, b.Groups())
	var c collector
	for i := range 400 {
		r := Record{PartitionKey: fmt.Sprintf("key-%d", i), Data: []byte("v")}
		if i%10 == 0 {
			r.ExplicitHashKey = splitPoint(i%4, 4).String() // the first hash key of shard i%4
		}
		g, err := b.Add(r, t0, c.emit)
		require.NoError(t, err)
		want, ok := m.Lookup(hashOf(t, r))
		require.True(t, ok)
		require.Equal(t, want, g)
	}
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 4)
	for _, e := range c.out {
		h, err := ParseHashKey(e.Agg.ExplicitHashKey)
		require.NoError(t, err)
		shard, ok := m.Lookup(h)
		require.True(t, ok)
		require.Equal(t, e.Group, shard)
		recs, err := Decode(e.Data)
		require.NoError(t, err)
		for _, r := range recs {
			s, _ := m.Lookup(hashOf(t, r))
			require.Equal(t, shard, s, "record %q", r.PartitionKey)
		}
	}
}

func TestBuilder_RecordHashingIntoAShardMapGapIsRejected(t *testing.T) {
	m, err := NewShardMap([]Shard{{ID: "low", Start: HashKey{}, End: HashKey{Lo: 100}}})
	require.NoError(t, err)
	b, err := NewBuilder(Config{}, m)
	require.NoError(t, err)
	var c collector
	_, err = b.Add(Record{PartitionKey: "k", ExplicitHashKey: "100", Data: nil}, t0, c.emit)
	require.NoError(t, err)
	_, err = b.Add(Record{PartitionKey: "k", ExplicitHashKey: "101", Data: nil}, t0, c.emit)
	require.ErrorIs(t, err, ErrNoShard)
	_, err = b.Add(Record{PartitionKey: "k", Data: nil}, t0, c.emit)
	require.ErrorIs(t, err, ErrNoShard)
	require.Contains(t, err.Error(), PartitionKeyHash("k").String())
}

func TestBuilder_WithoutShardMapAnAggregateHoldsOnePartitionKey(t *testing.T) {
	b, err := NewBuilder(Config{}, nil)
	require.NoError(t, err)
	var c collector
	groups := map[string]int{}
	for i := range 30 {
		pk := fmt.Sprint("pk", i%3)
		g, err := b.Add(Record{PartitionKey: pk, Data: []byte{byte(i)}}, t0, c.emit)
		require.NoError(t, err)
		if prev, ok := groups[pk]; ok {
			require.Equal(t, prev, g)
		}
		groups[pk] = g
	}
	require.Len(t, groups, 3)
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 3)
	for _, e := range c.out {
		recs, err := Decode(e.Data)
		require.NoError(t, err)
		require.Len(t, recs, 10)
		for _, r := range recs {
			require.Equal(t, recs[0].PartitionKey, r.PartitionKey)
		}
		require.Equal(t, PartitionKeyHash(recs[0].PartitionKey).String(), e.Agg.ExplicitHashKey)
	}
}

func TestBuilder_WithoutShardMapRecordsWithAnExplicitHashKeyGroupByIt(t *testing.T) {
	b, err := NewBuilder(Config{}, nil)
	require.NoError(t, err)
	var c collector
	add := func(pk, ehk string) int {
		g, err := b.Add(Record{PartitionKey: pk, ExplicitHashKey: ehk, Data: []byte(pk + ehk)}, t0, c.emit)
		require.NoError(t, err)
		return g
	}
	g1 := add("same", "")
	g2 := add("same", "5")
	g3 := add("other", "5")
	g4 := add("same", "6")
	require.NotEqual(t, g1, g2, "same partition key, but routed by another hash key")
	require.Equal(t, g2, g3, "same explicit hash key, same shard whatever the partition key")
	require.NotEqual(t, g2, g4)
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 3)
	agg := c.out[1].Agg
	require.Equal(t, "5", agg.ExplicitHashKey)
	recs, err := Decode(c.out[1].Data)
	require.NoError(t, err)
	require.Equal(t, []Record{
		{PartitionKey: "same", ExplicitHashKey: "5", Data: []byte("same5")},
		{PartitionKey: "other", ExplicitHashKey: "5", Data: []byte("other5")},
	}, recs)
}

func TestBuilder_PastMaxGroupsTheOldestAggregateIsClosedAndItsGroupReused(t *testing.T) {
	b, err := NewBuilder(Config{MaxGroups: 2}, nil)
	require.NoError(t, err)
	require.Equal(t, 2, b.Groups())
	var c collector
	ga, err := b.Add(Record{PartitionKey: "a", Data: []byte("1")}, t0, c.emit)
	require.NoError(t, err)
	gb, err := b.Add(Record{PartitionKey: "b", Data: []byte("2")}, t0.Add(time.Second), c.emit)
	require.NoError(t, err)
	_, err = b.Add(Record{PartitionKey: "a", Data: []byte("3")}, t0.Add(2*time.Second), c.emit)
	require.NoError(t, err)
	require.Empty(t, c.out)
	gc, err := b.Add(Record{PartitionKey: "c", Data: []byte("4")}, t0.Add(3*time.Second), c.emit)
	require.NoError(t, err)
	require.Len(t, c.out, 1, "a's aggregate, opened first, was closed")
	require.Equal(t, ga, c.out[0].Group)
	require.Equal(t, 2, c.out[0].Agg.Count)
	require.Equal(t, ga, gc, "c took the freed group")
	require.NotEqual(t, ga, gb)
	for _, g := range []int{ga, gb, gc} {
		require.True(t, g >= 0 && g < b.Groups())
	}
}

func TestBuilder_FlushOlderClosesOnlyAggregatesOpenedBeforeTheCutoff(t *testing.T) {
	for _, m := range []*ShardMap{nil, evenShards(t, 8)} {
		b, err := NewBuilder(Config{}, m)
		require.NoError(t, err)
		var c collector
		opened := map[int]time.Time{}
		for i := range 50 {
			now := t0.Add(time.Duration(i) * time.Millisecond)
			g, err := b.Add(Record{PartitionKey: fmt.Sprint("k", i%10), Data: []byte("x")}, now, c.emit)
			require.NoError(t, err)
			if _, ok := opened[g]; !ok {
				opened[g] = now
			}
		}
		cutoff := t0.Add(5 * time.Millisecond)
		require.NoError(t, b.FlushOlder(cutoff, c.emit))
		require.NotEmpty(t, c.out)
		for _, e := range c.out {
			require.True(t, opened[e.Group].Before(cutoff))
			delete(opened, e.Group)
		}
		for _, at := range opened {
			require.False(t, at.Before(cutoff), "a young aggregate stays open")
		}
		c.out = nil
		require.NoError(t, b.FlushOlder(cutoff, c.emit))
		require.Empty(t, c.out, "nothing left to flush before the cutoff")
		require.NoError(t, b.FlushAll(c.emit))
		require.Len(t, c.out, len(opened))
		records, size := b.Pending()
		require.Zero(t, records)
		require.Zero(t, size)
	}
}

func TestBuilder_EmitErrorKeepsTheAggregateOpenAndLosesNothing(t *testing.T) {
	b, err := NewBuilder(Config{MaxRecords: 2}, allShards(t))
	require.NoError(t, err)
	var c collector
	boom := errors.New("spool full")
	failing := func(int, *Aggregate) error { return boom }
	for i := range 2 {
		_, err := b.Add(Record{PartitionKey: "k", Data: []byte{byte(i)}}, t0, failing)
		require.NoError(t, err)
	}
	_, err = b.Add(Record{PartitionKey: "k", Data: []byte{2}}, t0, failing)
	require.ErrorIs(t, err, boom)
	records, _ := b.Pending()
	require.Equal(t, 2, records, "the third record was not added")
	require.ErrorIs(t, b.FlushAll(failing), boom)
	require.ErrorIs(t, b.FlushOlder(t0.Add(time.Hour), failing), boom)

	_, err = b.Add(Record{PartitionKey: "k", Data: []byte{2}}, t0, c.emit)
	require.NoError(t, err)
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 2)
	recs, err := Decode(c.out[0].Data)
	require.NoError(t, err)
	require.Equal(t, []Record{{PartitionKey: "k", Data: []byte{0}}, {PartitionKey: "k", Data: []byte{1}}}, recs)
	require.Equal(t, []byte{2}, c.out[1].Data)
}

func TestBuilder_EmitErrorWhileEvictingForANewKeyAddsNothing(t *testing.T) {
	b, err := NewBuilder(Config{MaxGroups: 1}, nil)
	require.NoError(t, err)
	var c collector
	_, err = b.Add(Record{PartitionKey: "a", Data: []byte("1")}, t0, c.emit)
	require.NoError(t, err)
	boom := errors.New("boom")
	_, err = b.Add(Record{PartitionKey: "b", Data: []byte("2")}, t0, func(int, *Aggregate) error { return boom })
	require.ErrorIs(t, err, boom)
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 1)
	require.Equal(t, "a", c.out[0].Agg.PartitionKey)
}

func TestBuilder_DataIsCopiedSoTheCallerMayReuseIt(t *testing.T) {
	b, err := NewBuilder(Config{}, allShards(t))
	require.NoError(t, err)
	var c collector
	buf := []byte("first")
	_, err = b.Add(Record{PartitionKey: "k", Data: buf}, t0, c.emit)
	require.NoError(t, err)
	copy(buf, "XXXXX")
	_, err = b.Add(Record{PartitionKey: "k", Data: buf}, t0, c.emit)
	require.NoError(t, err)
	require.NoError(t, b.FlushAll(c.emit))
	recs, err := Decode(c.out[0].Data)
	require.NoError(t, err)
	require.Equal(t, "first", string(recs[0].Data))
	require.Equal(t, "XXXXX", string(recs[1].Data))
}

func TestBuilder_ManyDistinctKeysMoveTheTablesAheadOfTheRecords(t *testing.T) {
	// More key table bytes than the room reserved ahead of the records.
	b, err := NewBuilder(Config{MaxBytes: MaxRecordSize, MaxRecords: 5000}, allShards(t))
	require.NoError(t, err)
	var c collector
	for round := range 3 {
		var want []Record
		for i := range 100 * (round + 1) {
			r := Record{PartitionKey: fmt.Sprintf("%d-%s", i, strings.Repeat("k", i%50)), Data: []byte(fmt.Sprint(i))}
			if i%3 == 0 {
				r.ExplicitHashKey = fmt.Sprint(i * 1000003)
			}
			want = append(want, r)
			_, err := b.Add(r, t0, c.emit)
			require.NoError(t, err)
		}
		_, size := b.Pending()
		c.out = nil
		require.NoError(t, b.FlushAll(c.emit))
		require.Equal(t, size, c.out[0].Agg.Size())
		got, err := Decode(c.out[0].Data)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
}

func TestBuilder_ConfigIsValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		msg  string // "" valid
	}{
		{"defaults", Config{}, ""},
		{"max bytes up to the record limit", Config{MaxBytes: MaxRecordSize}, ""},
		{"max bytes above the default record limit", Config{MaxBytes: MaxRecordSize + 1}, "above the record limit"},
		{"large-record stream", Config{MaxBytes: MaxLargeRecordSize, RecordLimit: MaxLargeRecordSize}, ""},
		{"record limit above 10 MiB", Config{RecordLimit: MaxLargeRecordSize + 1}, "record limit"},
		{"negative max records", Config{MaxRecords: -1}, "max records"},
		{"negative max bytes", Config{MaxBytes: -1}, "max bytes"},
		{"negative max groups", Config{MaxGroups: -1}, "max groups"},
		{"max pending bytes below max bytes", Config{MaxBytes: 64 << 10, MaxPendingBytes: 32 << 10}, "max pending bytes"},
		{"max pending bytes of one aggregate", Config{MaxBytes: 64 << 10, MaxPendingBytes: 64 << 10}, ""},
		{"large records raise the default bound", Config{MaxBytes: MaxLargeRecordSize, RecordLimit: MaxLargeRecordSize}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewBuilder(tc.cfg, nil)
			if tc.msg == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.msg)
		})
	}
	b, err := NewBuilder(Config{}, nil)
	require.NoError(t, err)
	require.Equal(t, Config{MaxBytes: 51200, MaxRecords: DefaultMaxRecords, RecordLimit: 1 << 20, MaxGroups: DefaultMaxGroups, MaxPendingBytes: DefaultMaxPendingBytes}, b.Config())
}

func TestBuilder_AddDoesNotAllocateInSteadyState(t *testing.T) {
	data := bytes.Repeat([]byte("d"), 200)
	keys := []string{"alpha", "beta", "gamma", "delta"}
	for _, tc := range []struct {
		name   string
		shards *ShardMap
		ehk    string
	}{
		{"by shard", evenShards(t, 4), ""},
		{"by shard with explicit hash keys", evenShards(t, 4), "1234567890123456789012345"},
		{"by partition key", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBuilder(Config{}, tc.shards)
			require.NoError(t, err)
			var sink []byte
			emit := func(_ int, a *Aggregate) error {
				sink = a.AppendKinesisData(sink[:0])
				return nil
			}
			i := 0
			add := func() {
				_, err := b.Add(Record{PartitionKey: keys[i%len(keys)], ExplicitHashKey: tc.ehk, Data: data}, t0, emit)
				if err != nil {
					t.Fatal(err)
				}
				i++
			}
			for range 5000 { // warm up: buffers and maps at their working size
				add()
			}
			require.Zero(t, testing.AllocsPerRun(5000, add))
		})
	}
}

// aggregateSize returns the size of one aggregate of recs.
func aggregateSize(t *testing.T, recs []Record) int {
	t.Helper()
	b, err := NewBuilder(Config{MaxBytes: MaxLargeRecordSize, RecordLimit: MaxLargeRecordSize, MaxRecords: len(recs)}, allShards(t))
	require.NoError(t, err)
	var c collector
	for _, r := range recs {
		_, err := b.Add(r, t0, c.emit)
		require.NoError(t, err)
	}
	require.NoError(t, b.FlushAll(c.emit))
	require.Len(t, c.out, 1)
	return c.out[0].Agg.Size()
}

func TestBuilder_KeyCachesStayCorrectUnderEvictionAndStringReuse(t *testing.T) {
	// More keys than the caches hold, each passed both as the same string
	// value (same address) and as a fresh copy, so that entries are evicted,
	// move between the ways of a set and go stale in the address cache.
	r := rand.New(rand.NewPCG(11, 12))
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
	}
	// Keys sliced from one string share their address: only their lengths
	// tell them apart.
	line := strings.Repeat("abcdefgh", 8)
	for i := range 20 {
		keys[100+i] = line[:1+i]
	}
	for _, m := range []*ShardMap{nil, evenShards(t, 8), allShards(t)} {
		b, err := NewBuilder(Config{MaxRecords: 50, MaxGroups: 64}, m)
		require.NoError(t, err)
		in := map[string][]string{} // per partition key, the data in order
		out := map[string][]string{}
		emit := func(group int, a *Aggregate) error {
			recs, err := DecodeKinesisRecord(a.PartitionKey, a.ExplicitHashKey, a.AppendKinesisData(nil))
			require.NoError(t, err)
			for _, rec := range recs {
				out[rec.PartitionKey] = append(out[rec.PartitionKey], string(rec.Data))
				if m != nil {
					shard, _ := m.Lookup(PartitionKeyHash(rec.PartitionKey))
					require.Equal(t, group, shard)
				}
			}
			return nil
		}
		for i := range 40_000 {
			k := keys[r.IntN(len(keys))]
			if i%2 == 0 {
				k = keys[r.IntN(20)+100*r.IntN(2)] // hot keys, half of them sliced from one string
			}
			if r.IntN(3) == 0 {
				k = string([]byte(k)) // same key, another address
			}
			data := fmt.Sprint(i)
			_, err := b.Add(Record{PartitionKey: k, Data: []byte(data)}, t0, emit)
			require.NoError(t, err)
			in[k] = append(in[k], data)
		}
		require.NoError(t, b.FlushAll(emit))
		require.Equal(t, in, out)
	}
}
