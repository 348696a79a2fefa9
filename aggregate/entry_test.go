package aggregate

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEntry_RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    Aggregate
	}{
		{"aggregate", Aggregate{PartitionKey: "a", ExplicitHashKey: "340282366920938463463374607431768211455", Aggregated: true, Body: pb(nil).str(1, "k").bytes(3, pb(nil).varint(1, 0).str(3, "x")).bytes(3, pb(nil).varint(1, 0).str(3, "y")), Count: 2}},
		{"plain record", Aggregate{PartitionKey: "key", Body: []byte("data"), Count: 1}},
		{"plain record with explicit hash key", Aggregate{PartitionKey: "key", ExplicitHashKey: "0", Body: []byte("data"), Count: 1}},
		{"plain empty record", Aggregate{PartitionKey: "k", Body: []byte{}, Count: 1}},
		{"long unicode key and large body", Aggregate{PartitionKey: strings.Repeat("ключ", 64), Body: make([]byte, 300), Count: 1}},
		{"newline framing", Aggregate{PartitionKey: "k", Aggregated: true, Framing: FramingLines, Body: []byte("x\ny\n"), Count: 2}},
		{"newline framing, JSON objects", Aggregate{PartitionKey: "k", ExplicitHashKey: "7", Aggregated: true, Framing: FramingLines, JSONObjects: true, Body: []byte("{}\n{}\n"), Count: 2}},
		{"KPL of JSON objects", Aggregate{PartitionKey: "a", ExplicitHashKey: "1", Aggregated: true, JSONObjects: true, Body: pb(nil).str(1, "k").bytes(3, pb(nil).varint(1, 0).str(3, "{}")).bytes(3, pb(nil).varint(1, 0).str(3, "{}")), Count: 2}},
		{"plain JSON object", Aggregate{PartitionKey: "key", Body: []byte("{}"), Count: 1, JSONObjects: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entry := tc.a.AppendEntry([]byte("prefix"))
			require.Equal(t, "prefix", string(entry[:6]), "appends")
			got, err := ParseEntry(entry[6:])
			require.NoError(t, err)
			require.Equal(t, tc.a, got)
		})
	}
}

func TestEntry_LayoutIsAsDocumented(t *testing.T) {
	a := Aggregate{PartitionKey: "a", ExplicitHashKey: "12", Aggregated: true, Body: []byte{0xAA, 0xBB}, Count: 300}
	// version 1, flags 1, count 300 (ac 02), pk "a", ehk "12", body aa bb.
	require.Equal(t, "0101ac02"+"0161"+"023132"+"02aabb", hex.EncodeToString(a.AppendEntry(nil)))
	// Version 2 only for the new flags: newline framing (4), JSON objects (2).
	a = Aggregate{PartitionKey: "k", Aggregated: true, Framing: FramingLines, JSONObjects: true, Body: []byte("x\ny\n"), Count: 2}
	require.Equal(t, "0207"+"02"+"016b"+"00"+"04780a790a", hex.EncodeToString(a.AppendEntry(nil)))
}

func TestParseEntry_MalformedEntryIsAnErrorNotAPanic(t *testing.T) {
	valid := (&Aggregate{PartitionKey: "a", ExplicitHashKey: "5", Aggregated: true, Body: make([]byte, 12), Count: 2}).AppendEntry(nil)
	for i := range len(valid) {
		_, err := ParseEntry(valid[:i])
		require.ErrorIs(t, err, ErrEntry, "truncated to %d bytes", i)
	}
	for _, tc := range []struct {
		name  string
		entry []byte
		msg   string
	}{
		{"unknown version", []byte{3, 0, 1, 1, 'k', 0, 0}, "unknown version 3"},
		{"unknown flags", []byte{1, 2, 1, 1, 'k', 0, 0}, "unknown flags"},
		{"version 1 with a version 2 flag", []byte{1, 5, 2, 1, 'k', 0, 4, 'x', '\n', 'y', '\n'}, "unknown flags"},
		{"unknown version 2 flags", []byte{2, 8, 1, 1, 'k', 0, 0}, "unknown flags"},
		{"newline framing on a plain record", []byte{2, 4, 1, 1, 'k', 0, 1, 'x'}, "newline framing on a plain record"},
		{"more lines than bytes", []byte{2, 5, 3, 1, 'k', 0, 2, '\n', '\n'}, "3 records cannot fit 2 bytes"},
		{"trailing bytes", append(append([]byte{}, valid...), 0), "1 bytes after the body"},
		{"no records", []byte{1, 0, 0, 1, 'k', 0, 0}, "no records"},
		{"plain with two records", []byte{1, 0, 2, 1, 'k', 0, 0}, "plain record with count 2"},
		{"more records than the body can hold", []byte{1, 1, 2, 1, 'a', 0, 6, 0, 0, 0, 0, 0, 0}, "2 records cannot fit 6 bytes"},
		{"empty partition key", []byte{1, 0, 1, 0, 0, 0}, "invalid partition key"},
		{"bad explicit hash key", []byte{1, 0, 1, 1, 'k', 1, 'x', 0}, "invalid explicit hash key"},
		{"huge length", []byte{1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "truncated partition key"},
		{"overlong varint", []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "bad record count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseEntry(tc.entry)
			require.ErrorIs(t, err, ErrEntry)
			require.ErrorContains(t, err, tc.msg)
		})
	}
}
