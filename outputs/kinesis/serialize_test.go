package kinesis

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/awscbor"
)

// The PutRecords body written by putRecordsProtocol is the JSON document
// the SDK's serializer writes, headers included, whatever the keys hold.
func TestPutRecordsProtocol_SameRequestAsTheSDK(t *testing.T) {
	type captured struct {
		body   []byte
		target string
		ctype  string
	}
	var mu sync.Mutex
	var got []captured
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, captured{b, r.Header.Get("X-Amz-Target"), r.Header.Get("Content-Type")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = io.WriteString(w, `{"FailedRecordCount":0,"Records":[]}`)
	}))
	defer srv.Close()
	client := func(fast bool) *kinesis.Client {
		return kinesis.New(kinesis.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
			Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
		}, func(o *kinesis.Options) {
			if fast {
				o.Protocol = putRecordsProtocol{ClientProtocol: o.Protocol}
			}
		})
	}
	in := &kinesis.PutRecordsInput{StreamName: aws.String("logs.v1-x"), Records: []types.PutRecordsRequestEntry{
		{Data: []byte("plain"), PartitionKey: aws.String("k")},
		{Data: []byte{0, 1, 2, 0xff, 0xfe}, PartitionKey: aws.String(`quote " back \ nl` + "\n\t\r\x01\x1f" + ` <&> é 日本 🙂`), ExplicitHashKey: aws.String("340282366920938463463374607431768211455")},
		{Data: []byte{}, PartitionKey: aws.String("invalid \xff utf8")},
		{Data: make([]byte, 100_000), PartitionKey: aws.String("big")},
	}}
	for _, fast := range []bool{false, true} {
		_, err := client(fast).PutRecords(t.Context(), in)
		require.NoError(t, err)
	}
	require.Len(t, got, 2)
	sdk, ours := got[0], got[1]
	require.Equal(t, sdk.target, ours.target)
	require.Equal(t, sdk.ctype, ours.ctype)
	var a, b any
	require.NoError(t, json.Unmarshal(sdk.body, &a))
	require.NoError(t, json.Unmarshal(ours.body, &b), string(ours.body[:200]))
	require.Equal(t, a, b)

	// Inputs it does not handle go to the SDK's serializer.
	in.StreamARN = aws.String("arn:aws:kinesis:us-east-1:123456789012:stream/logs")
	_, err := client(true).PutRecords(t.Context(), in)
	require.NoError(t, err)
	require.Contains(t, string(got[2].body), `"StreamARN"`)
}

func BenchmarkPutRecordsBody(b *testing.B) {
	in := &kinesis.PutRecordsInput{StreamName: aws.String("s")}
	for range 100 {
		in.Records = append(in.Records, types.PutRecordsRequestEntry{Data: make([]byte, 50<<10), PartitionKey: aws.String("0123456789abcdef")})
	}
	b.SetBytes(100 * 50 << 10)
	for b.Loop() {
		_ = appendPutRecords(nil, in)
	}
}

// The bodies written from a request's entries (aggregates framed as they
// are copied) are those written from the SDK's input with the data laid out
// beforehand, in CBOR and in JSON; the CBOR body's SHA-256 is its own.
func TestRequestBodies_SameAsFromTheInput(t *testing.T) {
	m, err := newShardMapForTest(3)
	require.NoError(t, err)
	recs := lines(rand.New(rand.NewPCG(testSeed(t), 9)), "body", 3000, 600)
	b := build(t, m, recs)
	entries := []entry{
		{rec: aggregate.Aggregate{PartitionKey: `q"uo\te` + "\x01é", Body: []byte("plain \x00\xff"), Count: 1}},
		{rec: aggregate.Aggregate{PartitionKey: "k", ExplicitHashKey: "340282366920938463463374607431768211455", Body: []byte{}, Count: 1}},
	}
	for _, a := range b.Records {
		entries = append(entries, entry{rec: a})
	}
	require.Greater(t, len(entries), 4)
	require.True(t, entries[2].rec.Aggregated)
	in := &kinesis.PutRecordsInput{StreamName: aws.String("the-stream")}
	for _, e := range entries {
		r := types.PutRecordsRequestEntry{Data: e.rec.AppendKinesisData(nil), PartitionKey: aws.String(e.rec.PartitionKey)}
		if e.rec.ExplicitHashKey != "" {
			r.ExplicitHashKey = aws.String(e.rec.ExplicitHashKey)
		}
		in.Records = append(in.Records, r)
	}
	sha := sha256.New()
	sha.Write([]byte("left over from the last request"))
	got, sum := appendCBORRequest([]byte("old content"), "the-stream", entries, sha)
	require.Equal(t, awscbor.AppendPutRecords([]byte("old content"), in), got)
	want := sha256.Sum256(got[len("old content"):])
	require.Equal(t, hex.EncodeToString(want[:]), sum)

	var scratch []byte
	require.Equal(t, appendPutRecords(nil, in), appendJSONRequest(nil, "the-stream", entries, &scratch))
}
