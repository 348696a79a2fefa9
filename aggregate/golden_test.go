package aggregate

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// goldenCase is a set of user records and the Kinesis records they encode to,
// kept in testdata/<name>.golden (refresh with go test -update).
type goldenCase struct {
	name    string
	comment string
	records []Record
}

func goldenCases() []goldenCase {
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	return []goldenCase{
		{"two_records_distinct_keys", "two partition keys, nothing to de-duplicate (hand-checked, see TestBuilder_TwoRecordsWithDistinctKeysEncodeToHandCheckedBytes)", []Record{
			{PartitionKey: "pk1", Data: []byte("hello")},
			{PartitionKey: "pk2", Data: []byte("world")},
		}},
		{"deduplicated_keys", "a repeated partition key is stored once; index 0 is still written", []Record{
			{PartitionKey: "user-1", Data: []byte("a")},
			{PartitionKey: "user-1", Data: []byte("b")},
			{PartitionKey: "user-2", Data: []byte("c")},
			{PartitionKey: "user-1", Data: []byte("d")},
		}},
		{"explicit_hash_keys", "explicit hash keys 0 and 2^128-1, de-duplicated, mixed with a record without one", []Record{
			{PartitionKey: "k", ExplicitHashKey: "0", Data: []byte("zero")},
			{PartitionKey: "k", Data: []byte("none")},
			{PartitionKey: "k", ExplicitHashKey: "340282366920938463463374607431768211455", Data: []byte("max")},
			{PartitionKey: "k", ExplicitHashKey: "0", Data: []byte("zero again")},
		}},
		{"empty_and_binary_data", "empty data keeps its required field (1a 00); data with every byte value", []Record{
			{PartitionKey: "bin", Data: []byte{}},
			{PartitionKey: "bin", Data: allBytes},
			{PartitionKey: "bin", Data: []byte{}},
		}},
		{"unicode_partition_keys", "partition keys of 256 Unicode characters", []Record{
			{PartitionKey: strings.Repeat("é", 256), Data: []byte("two-byte")},
			{PartitionKey: strings.Repeat("😀", 256), Data: []byte("four-byte")},
		}},
		{"single_record_is_plain", "one record is sent as it is, with its own keys", []Record{
			{PartitionKey: "alone", ExplicitHashKey: "42", Data: []byte("just me")},
		}},
	}
}

// encodeAll aggregates recs into one group (a single shard) and returns the
// Kinesis records.
func encodeAll(t testing.TB, recs []Record) []emitted {
	t.Helper()
	b, err := NewBuilder(Config{MaxBytes: MaxRecordSize}, allShards(t))
	require.NoError(t, err)
	var c collector
	for _, r := range recs {
		_, err := b.Add(r, t0, c.emit)
		require.NoError(t, err)
	}
	require.NoError(t, b.FlushAll(c.emit))
	return c.out
}

func formatGolden(tc goldenCase, out []emitted) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# %s\n# Kinesis records: partition key, explicit hash key, data (hex, 32 bytes a line).\n", tc.comment)
	for i, e := range out {
		fmt.Fprintf(&s, "record %d\npk %s\nehk %s\ncount %d\n", i, e.Agg.PartitionKey, e.Agg.ExplicitHashKey, e.Agg.Count)
		for d := e.Data; len(d) > 0; {
			n := min(32, len(d))
			fmt.Fprintf(&s, "data %s\n", hex.EncodeToString(d[:n]))
			d = d[n:]
		}
	}
	return s.String()
}

func TestGolden_EncodingMatchesTheCheckedBytes(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			out := encodeAll(t, tc.records)
			got := formatGolden(tc, out)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./aggregate/ -run TestGolden -update to create it")
			require.Equal(t, string(want), got)

			// And the bytes decode back to the records.
			require.Len(t, out, 1)
			recs, err := DecodeKinesisRecord(out[0].Agg.PartitionKey, out[0].Agg.ExplicitHashKey, out[0].Data)
			require.NoError(t, err)
			require.Equal(t, tc.records, recs)
		})
	}
}
