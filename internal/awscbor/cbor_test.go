package awscbor

import (
	"bytes"
	"encoding/hex"
	"math"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// The examples of RFC 8949, appendix A.
func TestAppend_RFC8949Examples(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{uint64(0), "00"},
		{uint64(23), "17"},
		{uint64(24), "1818"},
		{uint64(100), "1864"},
		{uint64(1000), "1903e8"},
		{uint64(1000000), "1a000f4240"},
		{uint64(1000000000000), "1b000000e8d4a51000"},
		{uint64(math.MaxUint64), "1bffffffffffffffff"},
		{-1, "20"},
		{int64(-1000), "3903e7"},
		{"", "60"},
		{"IETF", "6449455446"},
		{"\u00fc", "62c3bc"},
		{[]byte{1, 2, 3, 4}, "4401020304"},
		{[]any{uint64(1), []any{uint64(2), uint64(3)}}, "8201820203"},
		{map[string]any{"a": uint64(1), "b": []any{uint64(2), uint64(3)}}, "a26161016162820203"},
		{true, "f5"},
		{false, "f4"},
		{nil, "f6"},
		{1.1, "fb3ff199999999999a"},
	} {
		got, err := Append(nil, tc.v)
		require.NoError(t, err)
		require.Equal(t, tc.want, hex.EncodeToString(got), "%#v", tc.v)
		back, rest, err := Decode(got)
		require.NoError(t, err)
		require.Empty(t, rest)
		if i, ok := tc.v.(int); ok {
			tc.v = int64(i)
		}
		require.Equal(t, tc.v, back)
	}
	_, err := Append(nil, struct{}{})
	require.Error(t, err)
}

// Decode reads what other encoders write: indefinite lengths, tags, half
// and single floats, undefined.
func TestDecode_RFC8949Examples(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{"5f42010243030405ff", []byte{1, 2, 3, 4, 5}},
		{"7f657374726561646d696e67ff", "streaming"},
		{"5fff", []byte{}},
		{"9fff", []any{}},
		{"9f018202039f0405ffff", []any{uint64(1), []any{uint64(2), uint64(3)}, []any{uint64(4), uint64(5)}}},
		{"bf61610161629f0203ffff", map[string]any{"a": uint64(1), "b": []any{uint64(2), uint64(3)}}},
		{"bf6346756ef563416d7421ff", map[string]any{"Fun": true, "Amt": int64(-2)}},
		{"c074323031332d30332d32315432303a30343a30305a", "2013-03-21T20:04:00Z"},
		{"c11a514b67b0", uint64(1363896240)},
		{"f93c00", 1.0},
		{"f97bff", 65504.0},
		{"f90001", 5.960464477539063e-8},
		{"f9c400", -4.0},
		{"fa47c35000", 100000.0},
		{"f7", nil},
		{"3bffffffffffffffff", nil}, // out of int64: an error
	} {
		v, _, err := Decode(unhex(t, tc.in))
		if tc.in == "3bffffffffffffffff" {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, v, tc.in)
	}
}

func TestDecode_MalformedIsAnError(t *testing.T) {
	for _, in := range []string{
		"",
		"18",                 // argument missing
		"1c",                 // reserved additional information
		"1f",                 // indefinite integer
		"62c3",               // text cut short
		"7bffffffffffffffff", // absurd length
		"9bffffffffffffffff",
		"bbffffffffffffffff",
		"83010203"[:6],                  // array cut short
		"a1016161",                      // integer map key
		"ff",                            // break outside a container
		"5f6161ff",                      // text chunk in a byte string
		"5f5f4101ffff",                  // nested indefinite chunk
		"62c328",                        // invalid UTF-8
		"f818",                          // simple value 24
		"9f01",                          // unterminated indefinite array
		strings.Repeat("81", 40) + "01", // nested too deep
	} {
		_, _, err := Decode(unhex(t, in))
		require.Error(t, err, in)
	}
}

func testInput() *kinesis.PutRecordsInput {
	in := &kinesis.PutRecordsInput{StreamName: aws.String("my-stream")}
	// Data sizes around every head form's limits.
	for i, n := range []int{0, 1, 23, 24, 255, 256, 65535, 65536, 70000} {
		data := bytes.Repeat([]byte{byte(i), 0xff, 0}, n/3+1)[:n]
		e := types.PutRecordsRequestEntry{Data: data, PartitionKey: aws.String(strings.Repeat("k", i*7) + "ü\"")}
		if i%2 == 1 {
			e.ExplicitHashKey = aws.String("340282366920938463463374607431768211455")
		}
		in.Records = append(in.Records, e)
	}
	return in
}

func TestAppendPutRecords_RoundTrip(t *testing.T) {
	in := testInput()
	prefix := []byte("prefix")
	b := AppendPutRecords(prefix, in)
	require.Equal(t, "prefix", string(b[:6]))
	// The specialised encoder writes what the generic one does.
	recs := make([]any, len(in.Records))
	for i, r := range in.Records {
		m := map[string]any{"Data": r.Data, "PartitionKey": *r.PartitionKey}
		if r.ExplicitHashKey != nil {
			m["ExplicitHashKey"] = *r.ExplicitHashKey
		}
		recs[i] = m
	}
	generic, err := Append(nil, map[string]any{"Records": recs, "StreamName": "my-stream"})
	require.NoError(t, err)
	require.Equal(t, generic, b[6:])

	stream, entries, err := DecodePutRecordsRequest(b[6:])
	require.NoError(t, err)
	require.Equal(t, "my-stream", stream)
	require.Len(t, entries, len(in.Records))
	for i, e := range entries {
		require.Equal(t, in.Records[i].Data, e.Data)
		require.Equal(t, *in.Records[i].PartitionKey, e.PartitionKey)
		require.Equal(t, aws.ToString(in.Records[i].ExplicitHashKey), e.ExplicitHashKey)
	}
	// Invalid UTF-8 in a key is replaced, as encoding/json does.
	b = AppendPutRecords(nil, &kinesis.PutRecordsInput{StreamName: aws.String("s"), Records: []types.PutRecordsRequestEntry{{Data: []byte{}, PartitionKey: aws.String("a\xffb")}}})
	_, entries, err = DecodePutRecordsRequest(b)
	require.NoError(t, err)
	require.Equal(t, "a\uFFFDb", entries[0].PartitionKey)
}

func TestDecodePutRecordsResponse(t *testing.T) {
	doc := map[string]any{
		"FailedRecordCount": uint64(1),
		"EncryptionType":    "KMS",
		"Records": []any{
			map[string]any{"SequenceNumber": "4959", "ShardId": "shardId-000000000001"},
			map[string]any{"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard", "SequenceNumber": nil},
		},
		"Unknown": map[string]any{"x": []any{1.5}},
	}
	b, err := Append(nil, doc)
	require.NoError(t, err)
	check := func(b []byte) {
		t.Helper()
		var out kinesis.PutRecordsOutput
		require.NoError(t, DecodePutRecordsResponse(b, &out))
		require.Equal(t, int32(1), aws.ToInt32(out.FailedRecordCount))
		require.Equal(t, types.EncryptionTypeKms, out.EncryptionType)
		require.Len(t, out.Records, 2)
		require.Equal(t, "4959", aws.ToString(out.Records[0].SequenceNumber))
		require.Equal(t, "shardId-000000000001", aws.ToString(out.Records[0].ShardId))
		require.Nil(t, out.Records[0].ErrorCode)
		require.Equal(t, "ProvisionedThroughputExceededException", aws.ToString(out.Records[1].ErrorCode))
		require.Equal(t, "Rate exceeded for shard", aws.ToString(out.Records[1].ErrorMessage))
		require.Nil(t, out.Records[1].SequenceNumber)
	}
	check(b)
	// The same with indefinite-length maps and arrays (smithy's encoders
	// write those): bf ... ff, 9f ... ff.
	indef := []byte{0xbf}
	indef = AppendText(indef, "FailedRecordCount")
	indef = AppendHead(indef, majUint, 1)
	indef = AppendText(indef, "EncryptionType")
	indef = AppendText(indef, "KMS")
	indef = AppendText(indef, "Records")
	indef = append(indef, 0x9f, 0xbf)
	indef = AppendText(indef, "SequenceNumber")
	indef = append(indef, 0x7f, 0x62, '4', '9', 0x62, '5', '9', 0xff) // chunked text
	indef = AppendText(indef, "ShardId")
	indef = AppendText(indef, "shardId-000000000001")
	indef = append(indef, 0xff, 0xbf)
	indef = AppendText(indef, "ErrorCode")
	indef = AppendText(indef, "ProvisionedThroughputExceededException")
	indef = AppendText(indef, "ErrorMessage")
	indef = AppendText(indef, "Rate exceeded for shard")
	indef = append(indef, 0xff, 0xff, 0xff)
	check(indef)

	for _, bad := range []map[string]any{
		{"FailedRecordCount": "1"},
		{"FailedRecordCount": uint64(1) << 40},
		{"Records": "x"},
		{"Records": []any{"x"}},
		{"Records": []any{map[string]any{"ShardId": uint64(1)}}},
	} {
		b, err := Append(nil, bad)
		require.NoError(t, err)
		var out kinesis.PutRecordsOutput
		require.Error(t, DecodePutRecordsResponse(b, &out), "%v", bad)
	}
	var out kinesis.PutRecordsOutput
	require.Error(t, DecodePutRecordsResponse(unhex(t, "83010203"), &out))
	require.Error(t, DecodePutRecordsResponse(nil, &out))
}

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		doc           map[string]any
		code, message string
	}{
		{map[string]any{"__type": "ResourceNotFoundException", "message": "Stream s not found"}, "ResourceNotFoundException", "Stream s not found"},
		{map[string]any{"__type": "com.amazonaws.kinesis.v20131202#ValidationException:http://internal", "Message": "bad"}, "ValidationException", "bad"},
		{map[string]any{"code": "ThrottlingException"}, "ThrottlingException", ""},
		{map[string]any{}, "", ""},
	} {
		b, err := Append(nil, tc.doc)
		require.NoError(t, err)
		code, msg, err := DecodeError(b)
		require.NoError(t, err)
		require.Equal(t, tc.code, code)
		require.Equal(t, tc.message, msg)
	}
	_, _, err := DecodeError([]byte("<html>"))
	require.Error(t, err)
}

// Decoding never panics and never allocates beyond what the input can
// hold.
func FuzzDecodePutRecordsResponse(f *testing.F) {
	for _, doc := range []any{
		map[string]any{"FailedRecordCount": uint64(0), "Records": []any{map[string]any{"SequenceNumber": "1", "ShardId": "shardId-0"}}},
		map[string]any{"FailedRecordCount": uint64(1), "Records": []any{map[string]any{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}}},
		map[string]any{"__type": "ValidationException", "message": "bad"},
	} {
		b, err := Append(nil, doc)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add(unhex(f, "bf61610161629f0203ffff"))
	f.Add(unhex(f, "5f42010243030405ff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out kinesis.PutRecordsOutput
		if err := DecodePutRecordsResponse(b, &out); err == nil {
			require.LessOrEqual(t, len(out.Records), len(b))
		}
		_, _, _ = DecodeError(b)
		if _, entries, err := DecodePutRecordsRequest(b); err == nil {
			require.LessOrEqual(t, len(entries), len(b))
		}
	})
}

// A body written piece by piece is AppendPutRecords' body.
func TestAppendPutRecords_PieceByPiece(t *testing.T) {
	in := testInput()
	b := AppendPutRecordsHead([]byte("x"), len(in.Records))
	for _, r := range in.Records {
		b = AppendPutRecordsEntryHead(b, len(r.Data), r.ExplicitHashKey != nil, true)
		b = append(b, r.Data...)
		b = AppendPutRecordsEntryKeys(b, *r.PartitionKey, aws.ToString(r.ExplicitHashKey))
	}
	b = AppendPutRecordsTail(b, *in.StreamName)
	require.Equal(t, AppendPutRecords([]byte("x"), in), b)
}

// The scanning decoder reads what the generic one reads, aliasing the data,
// refuses what it refuses, and leaves indefinite lengths to it.
func TestDecodePutRecordsRequest_ScanSameAsGeneric(t *testing.T) {
	b := AppendPutRecords(nil, testInput())
	s1, e1, ok, err := scanPutRecordsRequest(b)
	require.NoError(t, err)
	require.True(t, ok)
	s2, e2, err := decodePutRecordsRequest(b)
	require.NoError(t, err)
	require.Equal(t, s2, s1)
	require.Equal(t, e2, e1)
	for i := range e1 { // the data alias the body
		if len(e1[i].Data) > 0 {
			e1[i].Data[0] ^= 0xff
			_, again, _, _ := scanPutRecordsRequest(b)
			require.Equal(t, e1[i].Data[0], again[i].Data[0], "aliased")
			break
		}
	}

	// Unknown keys skipped; missing Data refused by both.
	withExtra, err := Append(nil, map[string]any{"Records": []any{map[string]any{"Data": []byte("d"), "PartitionKey": "p", "Zz": []any{uint64(1)}}}, "StreamName": "s", "Aa": nil})
	require.NoError(t, err)
	_, es, err := DecodePutRecordsRequest(withExtra)
	require.NoError(t, err)
	require.Equal(t, []PutEntry{{Data: []byte("d"), PartitionKey: "p"}}, es)
	noData, err := Append(nil, map[string]any{"Records": []any{map[string]any{"PartitionKey": "p"}}})
	require.NoError(t, err)
	_, _, _, err = scanPutRecordsRequest(noData)
	require.Error(t, err)
	_, _, err = decodePutRecordsRequest(noData)
	require.Error(t, err)
	for _, cut := range []int{1, len(withExtra) / 2, len(withExtra) - 1} {
		_, _, err := DecodePutRecordsRequest(withExtra[:cut])
		require.Error(t, err, "cut at %d", cut)
	}

	// Indefinite lengths: {_ "Records": [_ {_ "Data": (_ h'61', h'62'), "PartitionKey": "k"}]}.
	indef := []byte{0xbf, 0x67, 'R', 'e', 'c', 'o', 'r', 'd', 's', 0x9f, 0xbf, 0x64, 'D', 'a', 't', 'a', 0x5f, 0x41, 'a', 0x41, 'b', 0xff,
		0x6c, 'P', 'a', 'r', 't', 'i', 't', 'i', 'o', 'n', 'K', 'e', 'y', 0x61, 'k', 0xff, 0xff, 0xff}
	_, _, ok, err = scanPutRecordsRequest(indef)
	require.NoError(t, err)
	require.False(t, ok)
	_, es, err = DecodePutRecordsRequest(indef)
	require.NoError(t, err)
	require.Equal(t, []PutEntry{{Data: []byte("ab"), PartitionKey: "k"}}, es)
}
