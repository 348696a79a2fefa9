package fakeaws

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/awscbor"
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

// A PutRecords in CBOR is answered in CBOR; its errors too.
func TestKinesis_SpeaksCBOR(t *testing.T) {
	k := NewKinesis(2)
	in := &kinesis.PutRecordsInput{StreamName: aws.String("s"), Records: []types.PutRecordsRequestEntry{
		{Data: []byte("one"), PartitionKey: aws.String("a")},
		{Data: []byte{0, 1, 2}, PartitionKey: aws.String("b"), ExplicitHashKey: aws.String("1")},
	}}
	post := func(body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("X-Amz-Target", "Kinesis_20131202.PutRecords")
		req.Header.Set("Content-Type", awscbor.ContentType)
		rec := httptest.NewRecorder()
		k.ServeHTTP(rec, req)
		return rec
	}
	rec := post(awscbor.AppendPutRecords(nil, in))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, awscbor.ContentType, rec.Header().Get("Content-Type"))
	var out kinesis.PutRecordsOutput
	require.NoError(t, awscbor.DecodePutRecordsResponse(rec.Body.Bytes(), &out))
	require.Equal(t, int32(0), aws.ToInt32(out.FailedRecordCount))
	require.Len(t, out.Records, 2)
	require.Equal(t, "shardId-000000000000", aws.ToString(out.Records[1].ShardId)) // hash key 1
	st := k.Stats()
	require.Equal(t, int64(2), st.UserRecords)
	require.Equal(t, int64(len("one")+len("a")+3+len("b")), st.Bytes)

	rec = post([]byte{0xa1, 0x61}) // cut short
	require.Equal(t, http.StatusBadRequest, rec.Code)
	code, msg, err := awscbor.DecodeError(rec.Body.Bytes())
	require.NoError(t, err)
	require.Equal(t, "ValidationException", code)
	require.Contains(t, msg, "awscbor")
}
