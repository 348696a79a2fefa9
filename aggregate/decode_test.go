package aggregate

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecode_PlainRecordPassesThroughUnchanged(t *testing.T) {
	for _, data := range [][]byte{[]byte("hello"), {}, {0xF3, 0x89, 0x9A}, {0xF3, 0x89, 0x9A, 0xC3, 0, 0}} {
		got, err := Decode(data)
		require.NoError(t, err)
		require.Equal(t, []Record{{Data: data}}, got)

		got, err = DecodeKinesisRecord("pk", "42", data)
		require.NoError(t, err)
		require.Equal(t, []Record{{Data: data, PartitionKey: "pk", ExplicitHashKey: "42"}}, got)
	}
}

func TestDecode_AcceptsWhatOtherEncodersMayWrite(t *testing.T) {
	tag := pb(nil).str(1, "k").str(2, "v")
	rec := func(pk uint64, data string) pb { return pb(nil).varint(1, pk).str(3, data) }
	for _, tc := range []struct {
		name string
		body pb
		want []Record
	}{
		{"no records", pb(nil), []Record{}},
		{"tables after the records", pb(nil).bytes(3, rec(0, "x")).str(1, "pk"), []Record{{PartitionKey: "pk", Data: []byte("x")}}},
		{"fields of a record in any order", pb(nil).str(1, "pk").str(2, "9").bytes(3, pb(nil).str(3, "x").varint(2, 0).varint(1, 0)),
			[]Record{{PartitionKey: "pk", ExplicitHashKey: "9", Data: []byte("x")}}},
		{"unknown fields are skipped", pb(nil).str(1, "pk").varint(9, 1).str(10, "?").bytes(3, rec(0, "x").varint(7, 3).str(8, "u")),
			[]Record{{PartitionKey: "pk", Data: []byte("x")}}},
		{"a known field of another wire type is skipped as unknown", pb(nil).str(1, "pk").varint(3, 5).bytes(3, rec(0, "x")),
			[]Record{{PartitionKey: "pk", Data: []byte("x")}}},
		{"tags are decoded", pb(nil).str(1, "pk").bytes(3, rec(0, "x").bytes(4, tag).bytes(4, pb(nil).str(1, "only-key"))),
			[]Record{{PartitionKey: "pk", Data: []byte("x"), Tags: []Tag{{Key: "k", Value: "v"}, {Key: "only-key"}}}}},
		{"a repeated scalar field: the last one wins", pb(nil).str(1, "p0").str(1, "p1").bytes(3, rec(0, "x").varint(1, 1)),
			[]Record{{PartitionKey: "p1", Data: []byte("x")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(wire(tc.body))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestDecode_MalformedAggregateIsAnErrorNotAPanic(t *testing.T) {
	good := pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 0).str(3, "data"))
	badMD5 := wire(good)
	badMD5[len(badMD5)-1] ^= 1
	for _, tc := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"magic only", []byte{0xF3, 0x89, 0x9A, 0xC2}, "shorter than magic and MD5"},
		{"magic and 15 bytes", append([]byte{0xF3, 0x89, 0x9A, 0xC2}, make([]byte, 15)...), "shorter than magic and MD5"},
		{"MD5 mismatch", badMD5, "MD5 mismatch"},
		{"truncated protobuf", wire(good[:len(good)-2]), "field 3 at byte 5: unexpected EOF"},
		{"truncated table entry", wire(pb{0x0a, 0x05, 'a'}), "field 1"},
		{"field number 0", wire(pb{0x00, 0x00}), "at byte 0"},
		{"truncated varint", wire(pb{0x08, 0x80}), "field 1"},
		{"missing partition key index", wire(pb(nil).str(1, "pk").bytes(3, pb(nil).str(3, "x"))), "partition_key_index missing"},
		{"missing data", wire(pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 0))), "data missing"},
		{"partition key index outside the table", wire(pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 1).str(3, "x"))), "partition key index 1 outside the table of 1 keys"},
		{"huge partition key index", wire(pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 1<<63).str(3, "x"))), "outside the table"},
		{"explicit hash key index with no table", wire(pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 0).varint(2, 0).str(3, "x"))), "explicit hash key index 0 outside the table of 0 keys"},
		{"tag without key", wire(pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 0).str(3, "x").bytes(4, pb(nil).str(2, "v")))), "key missing"},
		{"bad record after good ones", wire(pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 0).str(3, "x")).bytes(3, pb(nil).varint(1, 5).str(3, "y"))), "record 1"},
		{"unterminated group", wire(pb{0x0b}), "at byte 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.data)
			require.ErrorIs(t, err, ErrMalformed)
			require.ErrorContains(t, err, tc.msg)
			require.Nil(t, got)
		})
	}
}

func TestForEach_DeliversTheRecordsOfAnAggregate(t *testing.T) {
	body := pb(nil).str(1, "p0").str(1, "p1").str(2, "77").
		bytes(3, pb(nil).varint(1, 1).str(3, "a")).
		bytes(3, pb(nil).varint(1, 0).varint(2, 0).str(3, "")).
		bytes(3, pb(nil).varint(1, 1).varint(2, 0).str(3, "c"))
	a := Aggregate{PartitionKey: "a", ExplicitHashKey: "1", Aggregated: true, Body: body, Count: 3}
	var got []Record
	err := ForEach(&a, func(pk, ehk, data []byte) error {
		require.Equal(t, len(data), cap(data), "appending to data must not clobber the body")
		got = append(got, Record{PartitionKey: string(pk), ExplicitHashKey: string(ehk), Data: append([]byte{}, data...)})
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []Record{
		{PartitionKey: "p1", Data: []byte("a")},
		{PartitionKey: "p0", ExplicitHashKey: "77", Data: []byte{}},
		{PartitionKey: "p1", ExplicitHashKey: "77", Data: []byte("c")},
	}, got)
}

func TestForEach_PlainRecordIsDeliveredWithItsOwnKeys(t *testing.T) {
	a := Aggregate{PartitionKey: "pk", ExplicitHashKey: "5", Body: []byte("data"), Count: 1}
	calls := 0
	err := ForEach(&a, func(pk, ehk, data []byte) error {
		calls++
		require.Equal(t, "pk", string(pk))
		require.Equal(t, "5", string(ehk))
		require.Equal(t, "data", string(data))
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 1, calls)
}

func TestForEach_MalformedBodyDeliversNoRecord(t *testing.T) {
	body := pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 0).str(3, "x")).bytes(3, pb(nil).varint(1, 3).str(3, "y"))
	a := Aggregate{Aggregated: true, Body: body, Count: 2}
	err := ForEach(&a, func(_, _, _ []byte) error {
		t.Fatal("a record of a malformed aggregate was delivered")
		return nil
	})
	require.ErrorIs(t, err, ErrMalformed)
}

func TestForEach_StopsAtTheFirstCallbackError(t *testing.T) {
	body := pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 0).str(3, "x")).bytes(3, pb(nil).varint(1, 0).str(3, "y"))
	a := Aggregate{Aggregated: true, Body: body, Count: 2}
	stop := errors.New("stop")
	calls := 0
	err := ForEach(&a, func(_, _, _ []byte) error { calls++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, calls)
}

func TestForEach_DoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	b, err := NewBuilder(Config{}, allShards(t))
	require.NoError(t, err)
	var c collector
	for i := range 300 { // many distinct keys: tables beyond any small fixed array
		_, err := b.Add(Record{PartitionKey: string(rune('A' + i%200)), ExplicitHashKey: "1", Data: make([]byte, 100)}, t0, c.emit)
		require.NoError(t, err)
	}
	require.NoError(t, b.FlushAll(c.emit))
	aggs := []Aggregate{c.out[0].Agg, {PartitionKey: "pk", ExplicitHashKey: "", Body: []byte("x"), Count: 1}}
	n := 0
	fn := func(_, _, _ []byte) error { n++; return nil }
	for i := range aggs {
		require.NoError(t, ForEach(&aggs[i], fn)) // warm the pool
		require.Zero(t, testing.AllocsPerRun(100, func() {
			if err := ForEach(&aggs[i], fn); err != nil {
				t.Fatal(err)
			}
		}))
	}
}

func TestForEach_CountMismatchIsMalformed(t *testing.T) {
	body := pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 0).str(3, "x")).bytes(3, pb(nil).varint(1, 0).str(3, "y"))
	a := Aggregate{Aggregated: true, Body: body, Count: 3}
	err := ForEach(&a, func(_, _, _ []byte) error {
		t.Fatal("a record of a malformed aggregate was delivered")
		return nil
	})
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorContains(t, err, "2 records, the aggregate says 3")
}
