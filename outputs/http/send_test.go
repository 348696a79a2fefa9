package http

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/testport"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

func TestSend_FormatsOnTheWire(t *testing.T) {
	t.Parallel()
	data := []string{"plain", `quote " and \ back`, "tab\tnl\nctl\x01", "utf8 ☃", "bad \xff utf8", ` {"obj": [1, "x"]} `, `{"not": "an object"`}
	b64 := base64.StdEncoding.EncodeToString
	kafka := `{"records":[`
	for i, d := range data {
		if i > 0 {
			kafka += ","
		}
		kafka += `{"key":"` + b64([]byte("pk"+string(rune('0'+i)))) + `","value":"` + b64([]byte(d)) + `"}`
	}
	kafka += `]}`
	tests := []struct {
		format, encoding string
		contentType      string
		want             string
	}{
		{FormatNDJSON, "json", "application/x-ndjson", `{"message":"plain"}
{"message":"quote \" and \\ back"}
{"message":"tab\tnl\nctl\u0001"}
{"message":"utf8 ☃"}
{"message":"bad \ufffd utf8"}
{"obj": [1, "x"]}
{"message":"{\"not\": \"an object\""}
`},
		{FormatNDJSON, "text", "text/plain; charset=utf-8", "plain\nquote \" and \\ back\ntab\tnl\\nctl\x01\nutf8 ☃\nbad \xff utf8\n" + ` {"obj": [1, "x"]} ` + "\n" + `{"not": "an object"` + "\n"},
		{FormatJSON, "text", "application/json", `["plain","quote \" and \\ back","tab\tnl\nctl\u0001","utf8 ☃","bad \ufffd utf8"," {\"obj\": [1, \"x\"]} ","{\"not\": \"an object\""]`},
		{FormatJSON, "json", "application/json", `[{"message":"plain"},{"message":"quote \" and \\ back"},{"message":"tab\tnl\nctl\u0001"},{"message":"utf8 ☃"},{"message":"bad \ufffd utf8"},{"obj": [1, "x"]},{"message":"{\"not\": \"an object\""}]`},
		{FormatKafkaRESTv2, "", "application/vnd.kafka.binary.v2+json", kafka},
	}
	for _, tc := range tests {
		for _, comp := range []string{CompressionGzip, CompressionNone} {
			t.Run(tc.format+"/"+tc.encoding+"/"+comp, func(t *testing.T) {
				t.Parallel()
				rc := &recorder{}
				if tc.format == FormatKafkaRESTv2 {
					rc.respond = func(r request) reply { return kafkaOK(t, r) }
				}
				srv := startServer(t, rc)
				o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression, c.Encoding = tc.format, comp, tc.encoding }))

				require.NoError(t, o.Send(t.Context(), plainBatch(data...)))

				reqs := rc.requests()
				require.Len(t, reqs, 1)
				require.Equal(t, tc.want, string(reqs[0].Body))
				require.Equal(t, comp == CompressionGzip, reqs[0].Gzip)
				require.Equal(t, tc.contentType, reqs[0].Header.Get("Content-Type"))
				if tc.format == FormatJSON {
					require.True(t, json.Valid(reqs[0].Body))
				}
			})
		}
	}
}

func TestSend_RawFormat(t *testing.T) {
	t.Parallel()
	rc := &recorder{}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatRaw, CompressionNone }))
	agg := aggregate.Aggregate{PartitionKey: "a", ExplicitHashKey: "12345", Aggregated: true, Body: []byte{0x0a, 0x01, 'k'}, Count: 2}
	b := outputs.Batch{Records: []aggregate.Aggregate{
		{PartitionKey: "user-key", Body: []byte("plain record"), Count: 1},
		agg,
	}}

	require.NoError(t, o.Send(t.Context(), b))

	reqs := rc.requests()
	require.Len(t, reqs, 2, "one request per Kinesis record")
	require.Equal(t, "plain record", string(reqs[0].Body))
	require.Equal(t, "user-key", reqs[0].Header.Get("X-Partition-Key"))
	require.Empty(t, reqs[0].Header.Values("X-Explicit-Hash-Key"))
	require.Equal(t, "application/octet-stream", reqs[0].Header.Get("Content-Type"))

	// magic, the AggregatedRecord, and its MD5 (md5sum of 0a 01 6b).
	want := []byte{0xF3, 0x89, 0x9A, 0xC2, 0x0a, 0x01, 'k',
		0x6d, 0x44, 0x22, 0x0b, 0x0e, 0xea, 0xc8, 0xbc, 0xfd, 0x28, 0xa2, 0x81, 0x07, 0xa9, 0x6f, 0xf4}
	require.Equal(t, want, reqs[1].Body)
	require.Equal(t, "a", reqs[1].Header.Get("X-Partition-Key"))
	require.Equal(t, "12345", reqs[1].Header.Get("X-Explicit-Hash-Key"))
}

func TestSend_RawFormatSecondRecordFails(t *testing.T) {
	t.Parallel()
	rc := &recorder{script: []reply{{status: 200}, {status: 500}}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format = FormatRaw }))

	err := o.Send(t.Context(), plainBatch("a", "b", "c"))

	pe := requirePartial(t, err, 1, 2)
	require.False(t, outputs.IsPermanent(pe))
	require.Len(t, rc.requests(), 2, "sending stops at a retryable failure")
}

func TestSend_HeadersAndAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		mod   func(*Config)
		check func(t *testing.T, r request)
	}{
		{"defaults", func(*Config) {}, func(t *testing.T, r request) {
			require.Equal(t, "kplagent", r.Header.Get("User-Agent"))
			require.Empty(t, r.Header.Get("Authorization"))
		}},
		{"configured headers", func(c *Config) {
			c.Headers = map[string]string{"X-Api-Key": "s3cret", "Content-Type": "text/plain", "User-Agent": "mine", "Host": "virtual.example"}
		}, func(t *testing.T, r request) {
			require.Equal(t, "s3cret", r.Header.Get("X-Api-Key"))
			require.Equal(t, "text/plain", r.Header.Get("Content-Type"))
			require.Equal(t, "mine", r.Header.Get("User-Agent"))
			require.Equal(t, "virtual.example", r.Host)
		}},
		{"basic", func(c *Config) { c.Auth.Basic = &BasicAuth{Username: "user", Password: "p:w"} }, func(t *testing.T, r request) {
			hr := http.Request{Header: r.Header}
			u, p, ok := hr.BasicAuth()
			require.True(t, ok)
			require.Equal(t, "user", u)
			require.Equal(t, "p:w", p)
		}},
		{"bearer", func(c *Config) { c.Auth.Bearer = "tok.en" }, func(t *testing.T, r request) {
			require.Equal(t, "Bearer tok.en", r.Header.Get("Authorization"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := &recorder{}
			srv := startServer(t, rc)
			o := newOutput(t, config(srv.URL, tc.mod))
			require.NoError(t, o.Send(t.Context(), plainBatch("x")))
			reqs := rc.requests()
			require.Len(t, reqs, 1)
			tc.check(t, reqs[0])
		})
	}
}

func TestSend_StatusClassification(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 3000)
	tests := []struct {
		name      string
		reply     reply
		permanent bool
		throttle  time.Duration // -1: not a throttle
		contains  string
	}{
		{"200", reply{status: 200}, false, -1, ""},
		{"204", reply{status: 204}, false, -1, ""},
		{"400 with body", reply{status: 400, body: `{"error":"bad field"}`}, true, -1, `400 Bad Request: {"error":"bad field"}`},
		{"413", reply{status: 413}, true, -1, "413"},
		{"401", reply{status: 401}, true, -1, "401 Unauthorized"},
		{"long body truncated", reply{status: 422, body: long}, true, -1, strings.Repeat("x", 1024) + " …(truncated)"},
		{"301 not followed", reply{status: 301, header: map[string]string{"Location": "https://elsewhere/"}}, true, -1, "redirect to https://elsewhere/"},
		{"408", reply{status: 408}, false, -1, "408"},
		{"500", reply{status: 500, body: "boom"}, false, -1, "500 Internal Server Error: boom"},
		{"502", reply{status: 502}, false, -1, "502"},
		{"503", reply{status: 503}, false, -1, "503"},
		{"503 Retry-After seconds", reply{status: 503, header: map[string]string{"Retry-After": "120"}}, false, 120 * time.Second, "503"},
		{"429 Retry-After seconds", reply{status: 429, header: map[string]string{"Retry-After": "7"}}, false, 7 * time.Second, "429"},
		{"429 Retry-After date", reply{status: 429, header: map[string]string{"Retry-After": fixedNow.Add(90 * time.Second).Format(http.TimeFormat)}}, false, 90 * time.Second, "429"},
		{"429 Retry-After past date", reply{status: 429, header: map[string]string{"Retry-After": fixedNow.Add(-time.Hour).Format(http.TimeFormat)}}, false, 0, "429"},
		{"429 Retry-After garbage", reply{status: 429, header: map[string]string{"Retry-After": "soon"}}, false, 0, "429"},
		{"429 without Retry-After", reply{status: 429}, false, 0, "429"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := &recorder{script: []reply{tc.reply}}
			srv := startServer(t, rc)
			o := newOutput(t, config(srv.URL))
			o.now = func() time.Time { return fixedNow }

			err := o.Send(t.Context(), plainBatch("a", "b"))

			if tc.contains == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.contains)
			require.NotContains(t, err.Error(), strings.Repeat("x", 1025))
			require.Equal(t, tc.permanent, outputs.IsPermanent(err), "%v", err)
			var pe *outputs.PartialError
			require.False(t, errors.As(err, &pe), "every record failed: no PartialError")
			var te *outputs.ThrottleError
			if tc.throttle < 0 {
				require.False(t, errors.As(err, &te), "%v", err)
			} else {
				require.ErrorAs(t, err, &te)
				require.Equal(t, tc.throttle, te.Delay)
			}
			var se *StatusError
			require.ErrorAs(t, err, &se)
			require.Equal(t, tc.reply.status, se.StatusCode)
		})
	}
}

func TestSend_ConnectionRefusedIsRetryable(t *testing.T) {
	t.Parallel()
	addr := testport.Addr(t) // nothing listens there
	o := newOutput(t, config("http://"+addr+"/ingest"))

	err := o.Send(t.Context(), plainBatch("a"))

	requireRetryable(t, err)
	require.Contains(t, err.Error(), "connection refused")
}

func TestSend_TimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := startServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Timeout = 50 * time.Millisecond }))

	err := o.Send(t.Context(), plainBatch("a"))

	requireRetryable(t, err)
	require.Contains(t, err.Error(), "no response within timeout 50ms")
}

func TestSend_CanceledContext(t *testing.T) {
	t.Parallel()
	rc := &recorder{}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	err := o.Send(ctx, plainBatch("a"))

	requireRetryable(t, err)
	require.ErrorIs(t, err, context.Canceled)
}

func TestSend_EmptyBatchAndClose(t *testing.T) {
	t.Parallel()
	rc := &recorder{}
	srv := startServer(t, rc)
	o, err := New("test", config(srv.URL), Settings{})
	require.NoError(t, err)
	require.Equal(t, "test", o.Name())
	require.NoError(t, o.Send(t.Context(), outputs.Batch{}))
	require.Empty(t, rc.requests())
	require.NoError(t, o.Close(t.Context()))
	require.NoError(t, o.Close(t.Context()), "idempotent")
	require.Error(t, o.Send(t.Context(), plainBatch("a")))
}

func startServerFunc(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
