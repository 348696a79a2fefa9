package fakeaws

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
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

func sdkClient(url, akid, secret string, opts ...func(*kinesis.Options)) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider(akid, secret, ""),
	}, opts...)
}

// Signatures are checked as AWS checks them: the right secret passes, a
// wrong secret or a payload hash that is not the body's is refused.
func TestKinesis_ChecksSignatures(t *testing.T) {
	k := NewKinesis(1)
	k.CheckSignatures(map[string]string{"AKID": "secret"})
	srv := httptest.NewServer(k)
	defer srv.Close()
	in := &kinesis.PutRecordsInput{StreamName: aws.String("s"), Records: []types.PutRecordsRequestEntry{{Data: []byte("x"), PartitionKey: aws.String("k")}}}

	_, err := sdkClient(srv.URL, "AKID", "secret").PutRecords(t.Context(), in)
	require.NoError(t, err)
	require.Empty(t, k.Violations())

	for name, c := range map[string]*kinesis.Client{
		"wrong secret": sdkClient(srv.URL, "AKID", "other"),
		"unknown key":  sdkClient(srv.URL, "AKID2", "secret"),
		"wrong payload hash": sdkClient(srv.URL, "AKID", "secret", func(o *kinesis.Options) {
			o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
				return s.Finalize.Insert(middleware.FinalizeMiddlewareFunc("wrongHash", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					return next.HandleFinalize(v4.SetPayloadHash(ctx, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), in)
				}), "ComputePayloadHash", middleware.Before)
			})
		}),
	} {
		before := len(k.Violations())
		_, err := c.PutRecords(t.Context(), in)
		require.ErrorContains(t, err, "InvalidSignatureException", name)
		require.Len(t, k.Violations(), before+1, name)
	}
	require.Equal(t, int64(1), k.Stats().UserRecords)
	require.ElementsMatch(t, []string{"AKID", "AKID", "AKID2", "AKID"}, k.AccessKeyIDs())
}

// Throttling per shard, failed entries, answered shard IDs and ListShards
// pages, through the SDK.
func TestKinesis_ScriptedFailures(t *testing.T) {
	k := NewKinesis(2)
	k.KeepData = true
	srv := httptest.NewServer(k)
	defer srv.Close()
	c := sdkClient(srv.URL, "AKID", "secret")
	clock := &stoppedClock{t: time.Unix(0, 0)}
	k.Throttle(clock, 2)
	k.FailEntries(func(pk string, _ []byte) string {
		if pk == "bad" {
			return "InternalFailure"
		}
		return ""
	})
	k.AnswerShardID(func(real string) string { return real + "-x" })
	var recs []types.PutRecordsRequestEntry
	for _, pk := range []string{"bad", "a", "a", "a"} {
		recs = append(recs, types.PutRecordsRequestEntry{Data: []byte(pk), PartitionKey: aws.String(pk), ExplicitHashKey: aws.String("0")})
	}
	out, err := c.PutRecords(t.Context(), &kinesis.PutRecordsInput{StreamName: aws.String("s"), Records: recs})
	require.NoError(t, err)
	require.Equal(t, int32(2), aws.ToInt32(out.FailedRecordCount))
	require.Equal(t, "InternalFailure", aws.ToString(out.Records[0].ErrorCode))
	require.Equal(t, "shardId-000000000000-x", aws.ToString(out.Records[1].ShardId))
	require.Equal(t, "ProvisionedThroughputExceededException", aws.ToString(out.Records[3].ErrorCode), "2 records a second")
	st := k.Stats()
	require.Equal(t, 1, st.Throttled)
	require.Equal(t, 1, st.Failed)
	require.Len(t, k.Records()["shardId-000000000000"], 2)

	k.FailPuts(APIError{}, APIError{Status: 500, Code: "InternalFailure"})
	out, err = c.PutRecords(t.Context(), &kinesis.PutRecordsInput{StreamName: aws.String("s"), Records: recs[1:2]})
	require.NoError(t, err)
	require.Equal(t, "ProvisionedThroughputExceededException", aws.ToString(out.Records[0].ErrorCode), "no time passed")
	clock.t = clock.t.Add(time.Second)
	_, err = c.PutRecords(t.Context(), &kinesis.PutRecordsInput{StreamName: aws.String("s"), Records: recs[1:2]})
	require.ErrorContains(t, err, "InternalFailure")

	k.Reshard(3, "new-")
	k.SetListPageSize(2)
	var ids []string
	in := &kinesis.ListShardsInput{StreamName: aws.String("s")}
	for {
		out, err := c.ListShards(t.Context(), in)
		require.NoError(t, err)
		for _, s := range out.Shards {
			ids = append(ids, aws.ToString(s.ShardId))
		}
		if out.NextToken == nil {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	require.Equal(t, []string{"shardId-000000000000", "shardId-000000000001", "new-000000000000", "new-000000000001", "new-000000000002"}, ids)
	_, err = c.ListShards(t.Context(), &kinesis.ListShardsInput{StreamName: aws.String("s"), NextToken: aws.String("page-2")})
	require.Error(t, err, "NextToken with StreamName")
}

type stoppedClock struct{ t time.Time }

func (c *stoppedClock) Now() time.Time { return c.t }
