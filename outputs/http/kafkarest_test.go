package http

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/outputs"
)

// kafkaOK is a fake Confluent REST Proxy v2 produce endpoint: it decodes the
// request and answers one offset per record. A value starting with "retry"
// fails with error_code 2, "perm" with error_code 1.
func kafkaOK(t testing.TB, r request) reply {
	if ct := r.Header.Get("Content-Type"); ct != "application/vnd.kafka.binary.v2+json" {
		return reply{status: 415, body: `{"error_code":415,"message":"HTTP 415 Unsupported Media Type"}`}
	}
	var req struct {
		Records []struct {
			Key   *string `json:"key"`
			Value string  `json:"value"`
		} `json:"records"`
	}
	if err := json.Unmarshal(r.Body, &req); err != nil {
		return reply{status: 422, body: `{"error_code":42201,"message":"` + err.Error() + `"}`}
	}
	type offset struct {
		Partition *int    `json:"partition"`
		Offset    *int64  `json:"offset"`
		ErrorCode *int    `json:"error_code"`
		Error     *string `json:"error"`
	}
	resp := struct {
		KeySchemaID   *int     `json:"key_schema_id"`
		ValueSchemaID *int     `json:"value_schema_id"`
		Offsets       []offset `json:"offsets"`
	}{}
	for i, rec := range req.Records {
		v, err := base64.StdEncoding.DecodeString(rec.Value)
		if err != nil {
			return reply{status: 422, body: `{"error_code":42205,"message":"bad base64"}`}
		}
		var o offset
		switch {
		case strings.HasPrefix(string(v), "retry"):
			code, msg := 2, "Retriable Kafka exception: NotEnoughReplicasException"
			o.ErrorCode, o.Error = &code, &msg
		case strings.HasPrefix(string(v), "perm"):
			code, msg := 1, "Non-retriable Kafka exception: RecordTooLargeException"
			o.ErrorCode, o.Error = &code, &msg
		default:
			p, off := 0, int64(100+i)
			o.Partition, o.Offset = &p, &off
		}
		resp.Offsets = append(resp.Offsets, o)
	}
	body, err := json.Marshal(resp)
	if err != nil {
		t.Error(err)
	}
	return reply{status: 200, header: map[string]string{"Content-Type": "application/vnd.kafka.v2+json"}, body: string(body)}
}

func TestSend_KafkaREST(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		data      []string
		maxRecs   int
		failed    []int // nil: no error
		all       bool  // every record failed: a plain error
		permanent bool
	}{
		{"all delivered", []string{"a", "b", "c"}, 0, nil, false, false},
		{"retriable error_code 2", []string{"a", "retry-b", "c", "retry-d"}, 0, []int{1, 3}, false, false},
		{"non-retriable error_code 1 is permanent", []string{"perm-a", "b", "perm-c"}, 0, []int{0, 2}, false, true},
		{"mixed codes are retryable", []string{"perm-a", "b", "retry-c"}, 0, []int{0, 2}, false, false},
		{"every record failed", []string{"retry-a", "retry-b"}, 0, []int{0, 1}, true, false},
		{"failures across split requests", []string{"a", "retry-b", "c", "perm-d", "e"}, 2, []int{1, 3}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := &recorder{respond: func(r request) reply { return kafkaOK(t, r) }}
			srv := startServer(t, rc)
			o := newOutput(t, config(srv.URL+"/topics/logs", func(c *Config) {
				c.Format = FormatKafkaRESTv2
				if tc.maxRecs > 0 {
					c.MaxRequestRecords = tc.maxRecs
				}
			}))

			err := o.Send(t.Context(), plainBatch(tc.data...))

			if tc.failed == nil {
				require.NoError(t, err)
				return
			}
			require.Equal(t, tc.permanent, outputs.IsPermanent(err), "%v", err)
			if tc.all {
				var pe *outputs.PartialError
				require.NotErrorAs(t, err, &pe)
				require.Contains(t, err.Error(), "error_code 2")
				return
			}
			pe := requirePartial(t, err, tc.failed...)
			for _, r := range pe.Reasons {
				require.Contains(t, r, "Kafka exception")
			}
			require.Equal(t, tc.permanent, outputs.IsPermanent(pe.Err))
		})
	}
}

func TestSend_KafkaRESTBadResponses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		reply     reply
		contains  string
		permanent bool
	}{
		{"offsets count mismatch", reply{status: 200, body: `{"offsets":[{"partition":0,"offset":1}]}`}, "1 offsets for 2 records", false},
		{"topic not found", reply{status: 404, body: `{"error_code":40401,"message":"Topic not found."}`}, "40401", true},
		{"records too large", reply{status: 422, body: `{"error_code":42201,"message":"too large"}`}, "42201", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, &recorder{script: []reply{tc.reply}})
			o := newOutput(t, config(srv.URL, func(c *Config) { c.Format = FormatKafkaRESTv2 }))
			err := o.Send(t.Context(), plainBatch("a", "b"))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.contains)
			require.Equal(t, tc.permanent, outputs.IsPermanent(err))
		})
	}
}

func TestSend_KafkaRESTRecordWithoutKey(t *testing.T) {
	t.Parallel()
	rc := &recorder{respond: func(r request) reply { return kafkaOK(t, r) }}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatKafkaRESTv2, CompressionNone }))
	b := plainBatch("v")
	b.Records[0].PartitionKey = ""
	require.NoError(t, o.Send(t.Context(), b))
	require.Equal(t, fmt.Sprintf(`{"records":[{"value":"%s"}]}`, base64.StdEncoding.EncodeToString([]byte("v"))), string(rc.requests()[0].Body))
	require.Equal(t, "application/vnd.kafka.v2+json", rc.requests()[0].Header.Get("Accept"))
}
