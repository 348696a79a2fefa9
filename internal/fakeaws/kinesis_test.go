package fakeaws

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fast scanner reads what encoding/json reads, and declines what it
// does not know (then encoding/json reads it).
func TestScanPutRecords_SameAsEncodingJSON(t *testing.T) {
	type rec struct {
		Data            []byte
		ExplicitHashKey string `json:",omitempty"`
		PartitionKey    string
	}
	in := struct {
		Records    []rec
		StreamName string
	}{Records: []rec{
		{Data: []byte("hello"), PartitionKey: "k"},
		{Data: []byte{0, 0xff, '"', '\\'}, PartitionKey: `q"uo\te <&> é` + "\n\x01", ExplicitHashKey: "12345"},
		{Data: []byte{}, PartitionKey: "empty"},
	}, StreamName: "s"}
	body, err := json.Marshal(in)
	require.NoError(t, err)
	got, ok := scanPutRecords(body)
	require.True(t, ok, string(body))
	want, err := parsePutRecords(append([]byte(" "), body...)) // a leading space: encoding/json
	require.NoError(t, err)
	require.Len(t, got, 3)
	for i := range want {
		require.Equal(t, string(want[i].Data), string(got[i].Data))
		require.Equal(t, want[i].PartitionKey, got[i].PartitionKey)
		require.Equal(t, want[i].ExplicitHashKey, got[i].ExplicitHashKey)
	}
	_, ok = scanPutRecords([]byte(`{"Records":[{"Data":"aGk=","Extra":1}],"StreamName":"s"}`))
	require.False(t, ok)
}
