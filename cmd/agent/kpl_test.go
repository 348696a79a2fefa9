package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
)

// kplAggregate is the aggregate of ("pk1", "hello") and ("pk2", "world"),
// checked by hand in aggregate's tests.
var kplAggregate = mustHex("f3899ac2" + "0a03706b310a03706b321a0908001a0568656c6c6f1a0908011a05776f726c64" + "87c22af1ed18e292eb55b018413a3cff")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func runKPLTest(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runKPL(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// decodedLines parses the JSON lines of kpl decode.
func decodedLines(t *testing.T, stdout string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		lines = append(lines, m)
	}
	return lines
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestKPLDecode_FilePrintsOneJSONLinePerUserRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "record.bin")
	require.NoError(t, os.WriteFile(path, kplAggregate, 0o600))
	code, stdout, stderr := runKPLTest(t, "", "decode", path)
	require.Equal(t, 0, code, stderr)
	require.Equal(t,
		`{"record":"`+path+`","sub":0,"aggregated":true,"pk":"pk1","ehk":"","data":"aGVsbG8=","text":"hello"}`+"\n"+
			`{"record":"`+path+`","sub":1,"aggregated":true,"pk":"pk2","ehk":"","data":"d29ybGQ=","text":"world"}`+"\n",
		stdout)
}

func TestKPLDecode_PlainRecordFileTakesItsKeysFromFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plain.bin")
	require.NoError(t, os.WriteFile(path, []byte{0xff, 0x00}, 0o600))
	code, stdout, stderr := runKPLTest(t, "", "decode", "--pk", "key", "--ehk", "42", path)
	require.Equal(t, 0, code, stderr)
	lines := decodedLines(t, stdout)
	require.Len(t, lines, 1)
	require.Equal(t, map[string]any{"record": path, "sub": 0.0, "aggregated": false, "pk": "key", "ehk": "42", "data": "/wA="}, lines[0],
		"no text: the data is not UTF-8")
}

func TestKPLDecode_StdinBase64LinesWithBlankLines(t *testing.T) {
	plain := b64([]byte("just text"))
	stdin := "\n" + b64(kplAggregate) + "\n\n  " + strings.TrimRight(plain, "=") + "  \r\n"
	code, stdout, stderr := runKPLTest(t, stdin, "decode")
	require.Equal(t, 0, code, stderr)
	lines := decodedLines(t, stdout)
	require.Len(t, lines, 3)
	require.Equal(t, "stdin line 2", lines[0]["record"])
	require.Equal(t, "world", lines[1]["text"])
	require.Equal(t, "stdin line 4", lines[2]["record"], "unpadded base64 is accepted")
	require.Equal(t, "just text", lines[2]["text"])

	code, stdout2, _ := runKPLTest(t, stdin, "decode", "-")
	require.Equal(t, 0, code)
	require.Equal(t, stdout, stdout2)
}

func TestKPLDecode_StdinAWSCLIGetRecordsOutputAndLambdaEvents(t *testing.T) {
	getRecords := `{
    "Records": [
        {
            "SequenceNumber": "4963",
            "ApproximateArrivalTimestamp": "2025-01-01T00:00:00+00:00",
            "Data": "` + b64(kplAggregate) + `",
            "PartitionKey": "a",
            "ExplicitHashKey": "1"
        },
        {
            "SequenceNumber": "4964",
            "Data": "` + b64([]byte("plain")) + `",
            "PartitionKey": "mine"
        }
    ],
    "NextShardIterator": "AAAA",
    "MillisBehindLatest": 0
}
`
	lambda := `{"Records":[{"kinesis":{"partitionKey":"lk","sequenceNumber":"77","data":"` + b64([]byte("from lambda")) + `"},"eventSource":"aws:kinesis"}]}`
	code, stdout, stderr := runKPLTest(t, getRecords+lambda, "decode")
	require.Equal(t, 0, code, stderr)
	lines := decodedLines(t, stdout)
	require.Len(t, lines, 4)
	require.Equal(t, "stdin record 1 (sequence number 4963)", lines[0]["record"])
	require.Equal(t, "4963", lines[0]["seq"])
	require.Equal(t, "pk2", lines[1]["pk"])
	require.Equal(t, map[string]any{"record": "stdin record 2 (sequence number 4964)", "seq": "4964", "sub": 0.0, "aggregated": false,
		"pk": "mine", "ehk": "", "data": b64([]byte("plain")), "text": "plain"}, lines[2])
	require.Equal(t, "lk", lines[3]["pk"])
	require.Equal(t, "from lambda", lines[3]["text"])
}

func TestKPLDecode_BadRecordExitsOneNamingItAndOthersStillPrint(t *testing.T) {
	badMD5 := bytes.Clone(kplAggregate)
	badMD5[len(badMD5)-1] ^= 0xff
	truncated := kplAggregate[:len(kplAggregate)-20]
	stdin := b64(kplAggregate) + "\n" + b64(badMD5) + "\n" + "not base64!\n" + b64(truncated) + "\n" + b64([]byte("ok")) + "\n"
	code, stdout, stderr := runKPLTest(t, stdin, "decode")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "stdin line 2: aggregate: malformed aggregated record: MD5 mismatch")
	require.Contains(t, stderr, "stdin line 3: not base64")
	require.Contains(t, stderr, "stdin line 4: aggregate: malformed aggregated record")
	require.Contains(t, stderr, "3 record(s) failed to decode")
	require.NotContains(t, stderr, "line 1:")
	lines := decodedLines(t, stdout)
	require.Len(t, lines, 3)
	require.Equal(t, "stdin line 5", lines[2]["record"])
}

// Base64 that no encoder writes ("zz": its last bits are not zero) is not
// base64: it was decoded leniently into a byte that was never sent.
func TestKPLDecode_NonCanonicalBase64IsAnError(t *testing.T) {
	code, stdout, stderr := runKPLTest(t, `{"Records":[{"Data":"zz"},{"Data":"eg"}]}`, "decode")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "stdin record 1: Data is not base64")
	lines := decodedLines(t, stdout)
	require.Len(t, lines, 1)
	require.Equal(t, "eg==", lines[0]["data"], "z")
	code, _, stderr = runKPLTest(t, "zz\n", "decode")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "stdin line 1: not base64")
}

func TestKPLDecode_SkipMD5DecodesADamagedAggregate(t *testing.T) {
	badMD5 := bytes.Clone(kplAggregate)
	badMD5[len(badMD5)-1] ^= 0xff
	code, stdout, stderr := runKPLTest(t, b64(badMD5)+"\n", "decode", "--skip-md5")
	require.Equal(t, 0, code, stderr)
	require.Len(t, decodedLines(t, stdout), 2)
}

func TestKPLDecode_MissingFileExitsOneNamingIt(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.bin")
	ok := filepath.Join(t.TempDir(), "ok.bin")
	require.NoError(t, os.WriteFile(ok, kplAggregate, 0o600))
	code, stdout, stderr := runKPLTest(t, "", "decode", missing, ok)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, missing)
	require.Len(t, decodedLines(t, stdout), 2)
}

func TestKPLDecode_MalformedJSONExitsOne(t *testing.T) {
	code, _, stderr := runKPLTest(t, `{"Records": [`, "decode")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "stdin: JSON input")
}

func TestKPL_UsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"decode", "--bogus"}, {"encode", "extra"}, {"encode", "--max-bytes", "-5"}} {
		code, _, stderr := runKPLTest(t, "", args...)
		require.Equal(t, 2, code, "%q", args)
		require.NotEmpty(t, stderr)
	}
	code, stdout, _ := runKPLTest(t, "", "help")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "agent kpl decode")
}

func TestKPLEncode_OutputDecodesBackToTheLines(t *testing.T) {
	var in strings.Builder
	var want []string
	for i := range 500 {
		line := strings.Repeat(string(rune('a'+i%26)), i%300)
		want = append(want, line)
		in.WriteString(line + "\n")
	}
	for _, format := range []string{"base64", "json"} {
		t.Run(format, func(t *testing.T) {
			args := []string{"encode", "--pk", "k", "--max-bytes", "10000"}
			if format == "json" {
				args = append(args, "--json")
			}
			code, encoded, stderr := runKPLTest(t, in.String(), args...)
			require.Equal(t, 0, code, stderr)
			require.Greater(t, strings.Count(encoded, "\n"), 5, "several aggregates")

			code, decoded, stderr := runKPLTest(t, encoded, "decode")
			require.Equal(t, 0, code, stderr)
			var got []string
			for _, l := range decodedLines(t, decoded) {
				require.Equal(t, "k", l["pk"])
				got = append(got, l["text"].(string))
			}
			require.Equal(t, want, got)
		})
	}
}

func TestKPLEncode_LastLineWithoutNewlineAndRejectedRecord(t *testing.T) {
	code, encoded, stderr := runKPLTest(t, "one\ntwo", "encode")
	require.Equal(t, 0, code, stderr)
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	require.NoError(t, err)
	recs, err := aggregate.Decode(data)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "two", string(recs[1].Data))

	code, _, stderr = runKPLTest(t, "x\n", "encode", "--pk", "")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "stdin line 1: aggregate: invalid partition key")
}

// A line on stdin far longer than any base64 Kinesis record (binary data or
// /dev/zero piped by mistake) is skipped and named, never held whole in
// memory (`agent kpl decode < /dev/zero` grew until the OOM killer came);
// the lines after it still decode.
func TestKPLDecode_StdinLineLongerThanAnyRecordIsSkippedNotBuffered(t *testing.T) {
	stdin := strings.Repeat("A", 3<<20) + "\n" + b64([]byte("after")) + "\n"
	code, stdout, stderr := runKPLTest(t, stdin, "decode")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "stdin line 1: longer than 2097152 bytes")
	lines := decodedLines(t, stdout)
	require.Len(t, lines, 1)
	require.Equal(t, "stdin line 2", lines[0]["record"])
	require.Equal(t, "after", lines[0]["text"])

	r := bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 100)+"\nok\n"), 16)
	line, long, err := readLineMax(r, 50)
	require.NoError(t, err)
	require.True(t, long)
	require.Nil(t, line)
	line, long, err = readLineMax(r, 50)
	require.NoError(t, err)
	require.False(t, long)
	require.Equal(t, "ok\n", string(line))
	_, _, err = readLineMax(r, 50)
	require.ErrorIs(t, err, io.EOF)
}
