package http

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

// v3Record is a record of a v3 produce request, decoded.
type v3Record struct {
	Key, Value string
	HasKey     bool
}

// v3Proxy is a fake Confluent REST Proxy v3 produce endpoint: it decodes
// the stream of records and answers one delivery report per record. fate
// returns the error_code of a record (200: delivered).
type v3Proxy struct {
	t    testing.TB
	fate func(v3Record) (code int, msg string)

	mu   sync.Mutex
	reqs [][]v3Record
}

func (p *v3Proxy) respond(r request) reply {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return reply{status: 415, body: `{"error_code":415,"message":"HTTP 415 Unsupported Media Type"}`}
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	var recs []v3Record
	var out strings.Builder
	for {
		var in struct {
			Key *struct {
				Type string `json:"type"`
				Data string `json:"data"`
			} `json:"key"`
			Value struct {
				Type string `json:"type"`
				Data string `json:"data"`
			} `json:"value"`
		}
		err := dec.Decode(&in)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return reply{status: 400, body: `{"error_code":400,"message":"` + err.Error() + `"}`}
		}
		var rec v3Record
		if in.Key != nil {
			require.Equal(p.t, "BINARY", in.Key.Type)
			k, err := base64.StdEncoding.DecodeString(in.Key.Data)
			require.NoError(p.t, err)
			rec.Key, rec.HasKey = string(k), true
		}
		require.Equal(p.t, "BINARY", in.Value.Type)
		v, err := base64.StdEncoding.DecodeString(in.Value.Data)
		require.NoError(p.t, err)
		rec.Value = string(v)
		recs = append(recs, rec)
		code, msg := p.fate(rec)
		if code == 200 {
			fmt.Fprintf(&out, `{"error_code":200,"cluster_id":"c1","topic_name":"logs","partition_id":0,"offset":%d,"timestamp":"2026-12-06T06:00:00Z","value":{"type":"BINARY","size":%d}}`+"\n", len(recs), len(v))
		} else {
			fmt.Fprintf(&out, `{"error_code":%d,"message":%q}`+"\n", code, msg)
		}
	}
	p.mu.Lock()
	p.reqs = append(p.reqs, recs)
	p.mu.Unlock()
	return reply{status: 200, header: map[string]string{"Content-Type": "application/json"}, body: out.String()}
}

func (p *v3Proxy) requests() [][]v3Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]v3Record(nil), p.reqs...)
}

func startV3(t *testing.T, fate func(v3Record) (int, string), mods ...func(*Config)) (*v3Proxy, *Output) {
	t.Helper()
	p := &v3Proxy{t: t, fate: fate}
	srv := startServer(t, &recorder{respond: p.respond})
	o := newOutput(t, config(srv.URL+"/v3/clusters/c1/topics/logs/records", append([]func(*Config){func(c *Config) { c.Format = FormatKafkaRESTv3 }}, mods...)...))
	return p, o
}

func TestSend_KafkaRESTv3OnlyFailedRecordsAreResent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	failedOnce := map[string]bool{}
	// "flaky" records fail once with 500 (retryable), then are delivered.
	fate := func(r v3Record) (int, string) {
		if !strings.HasPrefix(r.Value, "flaky") {
			return 200, ""
		}
		mu.Lock()
		defer mu.Unlock()
		if failedOnce[r.Value] {
			return 200, ""
		}
		failedOnce[r.Value] = true
		return 500, "org.apache.kafka.common.errors.NotEnoughReplicasException"
	}
	p, o := startV3(t, fate, func(c *Config) { c.Compression = CompressionNone })
	recs := batchtest.Records("a0", "a1", "a2", "flaky-b0", "b1", "b2", "c0", "c1", "c2", "d0", "d1", "flaky-d2")
	b := batchtest.Build(t, 3, 0, recs...) // aggregates a, b, c, d
	require.Len(t, b.Records, 4)

	err := o.Send(t.Context(), b)
	pe := requirePartial(t, err, 1, 3)
	require.False(t, outputs.IsPermanent(pe.Err))
	for _, r := range pe.Reasons {
		require.Contains(t, r, "error_code 500")
		require.Contains(t, r, "NotEnoughReplicasException")
	}

	// The sender retries the failed aggregates only.
	retry := outputs.Batch{Records: []aggregate.Aggregate{b.Records[1], b.Records[3]}}
	require.NoError(t, o.Send(t.Context(), retry))

	reqs := p.requests()
	require.Len(t, reqs, 2)
	require.Len(t, reqs[0], 12)
	keyOf := map[string]string{}
	for _, r := range recs {
		keyOf[string(r.Data)] = r.PartitionKey
	}
	var second []string
	for _, r := range reqs[1] {
		second = append(second, r.Value)
		require.True(t, r.HasKey)
		require.Equal(t, keyOf[r.Value], r.Key, "the partition key travels as the key")
	}
	require.Equal(t, []string{"flaky-b0", "b1", "b2", "d0", "d1", "flaky-d2"}, second)
}

func TestSend_KafkaRESTv3Classification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		data      []string
		maxRecs   int
		failed    []int // nil: no error
		all       bool
		permanent bool
	}{
		{"all delivered", []string{"a", "b"}, 0, nil, false, false},
		{"400 is permanent", []string{"a", "e400", "c"}, 0, []int{1}, false, true},
		{"413 is permanent", []string{"e413", "b"}, 0, []int{0}, false, true},
		{"422 is permanent", []string{"a", "e422"}, 0, []int{1}, false, true},
		{"429 is retried", []string{"e429", "b"}, 0, []int{0}, false, false},
		{"403 is retried", []string{"a", "e403"}, 0, []int{1}, false, false},
		{"404 is retried", []string{"a", "e404"}, 0, []int{1}, false, false},
		{"503 is retried", []string{"e503", "b"}, 0, []int{0}, false, false},
		{"mixed is retryable", []string{"e400", "b", "e500"}, 0, []int{0, 2}, false, false},
		{"every record failed", []string{"e500", "e429"}, 0, []int{0, 1}, true, false},
		{"across split requests", []string{"a", "e500", "c", "e400", "e"}, 2, []int{1, 3}, false, false},
	}
	fate := func(r v3Record) (int, string) {
		var code int
		if _, err := fmt.Sscanf(r.Value, "e%d", &code); err == nil {
			return code, "failed with " + r.Value
		}
		return 200, ""
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, o := startV3(t, fate, func(c *Config) {
				if tc.maxRecs > 0 {
					c.MaxRequestRecords = tc.maxRecs
				}
			})
			err := o.Send(t.Context(), plainBatch(tc.data...))
			if tc.failed == nil {
				require.NoError(t, err)
				return
			}
			require.Equal(t, tc.permanent, outputs.IsPermanent(err), "%v", err)
			if tc.all {
				var pe *outputs.PartialError
				require.NotErrorAs(t, err, &pe)
				return
			}
			pe := requirePartial(t, err, tc.failed...)
			for _, r := range pe.Reasons {
				require.Contains(t, r, "error_code")
			}
		})
	}
}

func TestSend_KafkaRESTv3BadResponses(t *testing.T) {
	t.Parallel()
	ok := `{"error_code":200,"partition_id":0,"offset":1}` + "\n"
	tests := []struct {
		name     string
		reply    reply
		failed   []int // nil: the whole batch failed (not partial)
		contains string
		perm     bool
	}{
		{"fewer reports than records", reply{status: 200, body: ok}, []int{1, 2}, "delivery reports for 1 of 3 records", false},
		{"no report at all", reply{status: 200, body: ""}, nil, "delivery reports for 0 of 3", false},
		{"garbage after a report", reply{status: 200, body: ok + "<html>"}, []int{1, 2}, "cannot read delivery report 1", false},
		{"report without error_code", reply{status: 200, body: ok + `{"offset":2}`}, []int{1, 2}, "no error_code", false},
		{"more reports than records", reply{status: 200, body: ok + ok + ok + ok}, nil, "more delivery reports", false},
		{"topic not found", reply{status: 404, body: `{"error_code":404,"message":"This server does not host this topic-partition."}`}, nil, "404", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, &recorder{script: []reply{tc.reply}})
			o := newOutput(t, config(srv.URL, func(c *Config) { c.Format = FormatKafkaRESTv3 }))
			err := o.Send(t.Context(), plainBatch("a", "b", "c"))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.contains)
			require.Equal(t, tc.perm, outputs.IsPermanent(err))
			if tc.failed != nil {
				requirePartial(t, err, tc.failed...)
			} else {
				var pe *outputs.PartialError
				require.NotErrorAs(t, err, &pe)
			}
		})
	}
}

func TestSend_KafkaRESTv3Body(t *testing.T) {
	t.Parallel()
	rc := &recorder{respond: func(r request) reply {
		return reply{status: 200, body: strings.Repeat(`{"error_code":200}`, 2)}
	}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatKafkaRESTv3, CompressionNone }))
	b := plainBatch("v\x00\xff", "w")
	b.Records[1].PartitionKey = ""
	require.NoError(t, o.Send(t.Context(), b))
	req := rc.requests()[0]
	b64 := base64.StdEncoding.EncodeToString
	require.Equal(t,
		`{"key":{"type":"BINARY","data":"`+b64([]byte("pk0"))+`"},"value":{"type":"BINARY","data":"`+b64([]byte("v\x00\xff"))+`"}}`+"\n"+
			`{"value":{"type":"BINARY","data":"`+b64([]byte("w"))+`"}}`+"\n",
		string(req.Body))
	require.Equal(t, "application/json", req.Header.Get("Content-Type"))
	require.Equal(t, "application/json", req.Header.Get("Accept"))
}
