package http

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
	"github.com/kplagent/agent/outputs/internal/encode"
)

// Aggregates in the newline framing (what a flow builds for this output)
// send the same bodies as KPL aggregates of the same records, whether they
// are copied whole (ndjson) or record by record.
func TestSendLines_SameBodiesAsKPL(t *testing.T) {
	t.Parallel()
	data := []string{"r0", `r1 "q"`, "r2\rx", "r3", "{\"a\": 1}", "r5", "r6"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"ndjson text", func(c *Config) { c.Encoding = encode.EncodingNameText }},
		{"ndjson json", func(c *Config) { c.Encoding = encode.EncodingNameJSON }},
		{"json", func(c *Config) { c.Format = FormatJSON; c.Encoding = encode.EncodingNameJSON }},
		{"json text", func(c *Config) { c.Format = FormatJSON; c.Encoding = encode.EncodingNameText }},
		{"kafka-rest-v2", func(c *Config) { c.Format = FormatKafkaRESTv2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var bodies [2]string
			for k, b := range []outputs.Batch{
				batchtest.Build(t, 3, 0, batchtest.LineRecords(data...)...),
				batchtest.BuildLines(t, 3, 0, batchtest.LineRecords(data...)...),
			} {
				rc := &recorder{}
				if tc.name == "kafka-rest-v2" {
					rc.respond = func(r request) reply { return kafkaOK(t, r) }
				}
				srv := startServer(t, rc)
				o := newOutput(t, config(srv.URL, tc.mod))
				require.NoError(t, o.Send(t.Context(), b))
				require.Len(t, rc.requests(), 1)
				bodies[k] = string(rc.requests()[0].Body)
			}
			require.Equal(t, bodies[0], bodies[1])
		})
	}
}

func TestSendLines_TextIsTheBodyAsItIs(t *testing.T) {
	t.Parallel()
	data := numbered(50, 30)
	b := batchtest.BuildLines(t, 20, 0, batchtest.LineRecords(data...)...)
	for _, a := range b.Records {
		require.Equal(t, aggregate.FramingLines, a.Framing)
	}
	rc := &recorder{}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Encoding = encode.EncodingNameText; c.MaxRequestRecords = 45 }))
	require.NoError(t, o.Send(t.Context(), b))
	reqs := rc.requests()
	require.Len(t, reqs, 2, "a whole aggregate that does not fit goes to the next request")
	require.Equal(t, lines(data[:40]...), string(reqs[0].Body))
	require.Equal(t, lines(data[40:]...), string(reqs[1].Body))
}

// A 400 of a request of whole aggregates is split down to the bad user
// records, which are rejected on their own, as with KPL aggregates.
func TestSendLines_400RejectsOnlyTheBadRecords(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := map[string]int{}
	rc := &recorder{respond: func(r request) reply {
		if bytes.Contains(r.Body, []byte("bad")) {
			return reply{status: 400, body: "schema mismatch"}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, l := range strings.Split(strings.TrimSuffix(string(r.Body), "\n"), "\n") {
			got[l]++
		}
		return reply{status: 200}
	}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Encoding = encode.EncodingNameText }))
	data := numbered(20, 20)
	data[3], data[14] = "bad3", "bad14"
	b := batchtest.BuildLines(t, 10, 0, batchtest.LineRecords(data...)...)
	require.Equal(t, aggregate.FramingLines, b.Records[0].Framing)

	err := o.Send(t.Context(), b)

	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	require.NoError(t, re.Err)
	require.Len(t, re.Rejected, 2)
	require.Equal(t, outputs.RejectedRecord{Record: 0, UserRecord: 3, Reason: re.Rejected[0].Reason}, re.Rejected[0])
	require.Equal(t, outputs.RejectedRecord{Record: 1, UserRecord: 4, Reason: re.Rejected[1].Reason}, re.Rejected[1])
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 18)
}

// Records the processing stage made JSON objects are written as they are,
// without another check; one with a line break (white space in a nested
// value) is still kept on one line.
func TestSend_JSONObjectsAreNotCheckedAgain(t *testing.T) {
	t.Parallel()
	objs := []string{`{"a":1}`, `{"b":[1,` + "\r\n" + `2]}`, `{"c":"x"}`}
	recs := batchtest.LineRecords(objs...)
	for i := range recs {
		recs[i].JSONObject = true
	}
	for _, tc := range []struct {
		name, format, want string
	}{
		{"ndjson", FormatNDJSON, "{\"a\":1}\n{\"b\":[1,2]}\n{\"c\":\"x\"}\n"},
		{"json", FormatJSON, `[{"a":1},{"b":[1,2]},{"c":"x"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, b := range []outputs.Batch{batchtest.Build(t, 10, 0, recs...), batchtest.BuildLines(t, 10, 0, recs...)} {
				require.True(t, b.Records[0].JSONObjects)
				rc := &recorder{}
				srv := startServer(t, rc)
				o := newOutput(t, config(srv.URL, func(c *Config) { c.Format = tc.format; c.Encoding = encode.EncodingNameJSON }))
				require.NoError(t, o.Send(t.Context(), b))
				require.Equal(t, tc.want, string(rc.requests()[0].Body))
			}
		})
	}
	// The fact is what makes the difference: without it, what only looks
	// like an object is wrapped.
	trusted := batchtest.BuildLines(t, 10, 0, aggregate.Record{PartitionKey: "pk", Data: []byte(`{"a":}`), JSONObject: true}, aggregate.Record{PartitionKey: "pk", Data: []byte(`{"b":2}`), JSONObject: true})
	checked := batchtest.BuildLines(t, 10, 0, batchtest.LineRecords(`{"a":}`, `{"b":2}`)...)
	for _, tc := range []struct {
		b    outputs.Batch
		want string
	}{{trusted, "{\"a\":}\n{\"b\":2}\n"}, {checked, "{\"message\":\"{\\\"a\\\":}\"}\n{\"b\":2}\n"}} {
		rc := &recorder{}
		srv := startServer(t, rc)
		o := newOutput(t, config(srv.URL, func(c *Config) { c.Encoding = encode.EncodingNameJSON }))
		require.NoError(t, o.Send(t.Context(), tc.b))
		require.Equal(t, tc.want, string(rc.requests()[0].Body))
	}
}

func TestWritesRecords(t *testing.T) {
	t.Parallel()
	for format, want := range map[string]bool{FormatNDJSON: true, FormatJSON: true, FormatKafkaRESTv2: true, FormatKafkaRESTv3: true, FormatRaw: false} {
		o := newOutput(t, config("http://127.0.0.1:1/", func(c *Config) { c.Format = format }))
		require.Equal(t, want, o.WritesRecords(), format)
	}
}

// A newline-framed body that does not hold the records it says is refused
// whole (dead-lettered), and nothing of it is sent.
func TestSendLines_MalformedBodyIsPermanent(t *testing.T) {
	t.Parallel()
	for _, body := range []string{"x\ny\n", "x\ny\nz\nw\n", "x\ny"} {
		rc := &recorder{}
		srv := startServer(t, rc)
		o := newOutput(t, config(srv.URL))
		b := plainBatch("a", "", "c")
		b.Records[1] = aggregate.Aggregate{PartitionKey: "k", Aggregated: true, Framing: aggregate.FramingLines, Body: []byte(body), Count: 3}

		err := o.Send(t.Context(), b)

		pe := requirePartial(t, err, 1)
		require.True(t, outputs.IsPermanent(pe.Err))
		require.Contains(t, pe.Reasons[0], "decode record 1 of the batch")
		require.Equal(t, lines("a", "c"), string(rc.requests()[0].Body), "body %q", body)
	}
}
