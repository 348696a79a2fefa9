package aggregate

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAppendKinesisAggregate_PlainRecordWithAnExplicitHashKeyIsWrapped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a    Aggregate
	}{
		{"short", Aggregate{PartitionKey: "pk", ExplicitHashKey: "42", Body: []byte("hello"), Count: 1}},
		{"empty data", Aggregate{PartitionKey: "pk", ExplicitHashKey: "0", Count: 1}},
		{"long keys and data", Aggregate{PartitionKey: string(bytes.Repeat([]byte("k"), 256)), ExplicitHashKey: MaxHashKey.String(), Body: bytes.Repeat([]byte{0xF3, '\n'}, 100_000), Count: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := []byte("before")
			got := tc.a.AppendKinesisAggregate(bytes.Clone(prefix))
			require.Equal(t, prefix, got[:len(prefix)])
			data := got[len(prefix):]
			require.Len(t, data, tc.a.KinesisAggregateSize())
			require.True(t, IsAggregated(data))
			recs, err := Decode(data) // no keys beside the data: they come from the tables
			require.NoError(t, err)
			require.Len(t, recs, 1)
			require.Equal(t, tc.a.PartitionKey, recs[0].PartitionKey)
			require.Equal(t, tc.a.ExplicitHashKey, recs[0].ExplicitHashKey)
			require.Equal(t, string(tc.a.Body), string(recs[0].Data))
		})
	}
}

func TestAppendKinesisAggregate_OthersAreTheirKinesisData(t *testing.T) {
	t.Parallel()
	cases := []Aggregate{{PartitionKey: "pk", Body: []byte("no hash key"), Count: 1}}
	for _, cfg := range []Config{{}, {Framing: FramingLines}} {
		var c collector
		b, err := NewBuilder(cfg, allShards(t))
		require.NoError(t, err)
		for _, r := range []Record{{PartitionKey: "a", ExplicitHashKey: "7", Data: []byte("x")}, {PartitionKey: "a", ExplicitHashKey: "7", Data: []byte("y")}} {
			_, err := b.Add(r, t0, c.emit)
			require.NoError(t, err)
		}
		require.NoError(t, b.FlushAll(c.emit))
		require.Len(t, c.out, 1)
		require.True(t, c.out[0].Agg.Aggregated)
		require.Equal(t, cfg.Framing, c.out[0].Agg.Framing)
		cases = append(cases, c.out[0].Agg)
	}
	for _, a := range cases {
		require.Equal(t, a.AppendKinesisData(nil), a.AppendKinesisAggregate(nil))
		require.Equal(t, len(a.AppendKinesisData(nil)), a.KinesisAggregateSize())
	}
}

func TestCrossCheck_NodeAggLibReadsTheExplicitHashKeyOfAWrappedRecord(t *testing.T) {
	requireNode(t)
	a := Aggregate{PartitionKey: "user-7", ExplicitHashKey: "170141183460469231731687303715884105728", Body: []byte(`{"msg":"one"}`), Count: 1}
	var req struct {
		Op      string       `json:"op"`
		Records []nodeRecord `json:"records"`
	}
	req.Op = "deaggregate"
	// As a Kafka consumer has it: the key beside the data, no hash key.
	req.Records = []nodeRecord{toNode(a.PartitionKey, "", a.AppendKinesisAggregate(nil))}
	results := runNode(t, req)
	require.Len(t, results, 1)
	require.Empty(t, results[0].Error)
	require.Len(t, results[0].Records, 1)
	got := results[0].Records[0]
	require.Equal(t, a.Body, decodeBase64(t, got.Data))
	require.Equal(t, a.PartitionKey, got.PartitionKey)
	require.NotNil(t, got.ExplicitHashKey)
	require.Equal(t, a.ExplicitHashKey, *got.ExplicitHashKey)
}
