package http

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

// Tests with real KPL aggregates (several user records per Kinesis record).

func TestSendAggregates_FormatsCarryUserRecords(t *testing.T) {
	t.Parallel()
	data := []string{"r0", "r1 \"q\"", "r2", "r3", "r4", "r5", "r6"}
	b := batchtest.Build(t, 3, 0, batchtest.Records(data...)...)
	require.Len(t, b.Records, 3)
	require.Equal(t, "a", b.Records[0].PartitionKey, "an aggregate's own key is not a user key")

	t.Run("ndjson", func(t *testing.T) {
		t.Parallel()
		rc := &recorder{}
		srv := startServer(t, rc)
		o := newOutput(t, config(srv.URL))
		require.NoError(t, o.Send(t.Context(), b))
		require.Equal(t, lines(data...), string(rc.requests()[0].Body))
	})
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		rc := &recorder{}
		srv := startServer(t, rc)
		o := newOutput(t, config(srv.URL, func(c *Config) { c.Format = FormatJSON }))
		require.NoError(t, o.Send(t.Context(), b))
		require.Equal(t, `["r0","r1 \"q\"","r2","r3","r4","r5","r6"]`, string(rc.requests()[0].Body))
	})
	t.Run("kafka-rest-v2 keys are the user records' partition keys", func(t *testing.T) {
		t.Parallel()
		rc := &recorder{respond: func(r request) reply { return kafkaOK(t, r) }}
		srv := startServer(t, rc)
		o := newOutput(t, config(srv.URL, func(c *Config) { c.Format = FormatKafkaRESTv2 }))
		require.NoError(t, o.Send(t.Context(), b))
		var want []string
		for i, d := range data {
			want = append(want, fmt.Sprintf(`{"key":"%s","value":"%s"}`,
				base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "pk%d", i)), base64.StdEncoding.EncodeToString([]byte(d))))
		}
		require.Equal(t, `{"records":[`+strings.Join(want, ",")+`]}`, string(rc.requests()[0].Body))
	})
	t.Run("raw sends the Kinesis data of each aggregate", func(t *testing.T) {
		t.Parallel()
		rc := &recorder{}
		srv := startServer(t, rc)
		o := newOutput(t, config(srv.URL, func(c *Config) { c.Format = FormatRaw }))
		require.NoError(t, o.Send(t.Context(), b))
		reqs := rc.requests()
		require.Len(t, reqs, 3)
		var got []string
		for i, r := range reqs {
			require.Equal(t, b.Records[i].AppendKinesisData(nil), r.Body)
			require.Equal(t, b.Records[i].PartitionKey, r.Header.Get("X-Partition-Key"))
			require.Equal(t, b.Records[i].ExplicitHashKey, r.Header.Get("X-Explicit-Hash-Key"))
			recs, err := aggregate.DecodeKinesisRecord(b.Records[i].PartitionKey, b.Records[i].ExplicitHashKey, r.Body)
			require.NoError(t, err)
			for _, u := range recs {
				got = append(got, string(u.Data))
			}
		}
		require.Equal(t, data, got)
		require.NotEmpty(t, reqs[0].Header.Get("X-Explicit-Hash-Key"), "an aggregate carries its first record's hash key")
	})
}

// An aggregate split across two requests fails whole when either fails.
func TestSendAggregates_SplitAcrossRequests(t *testing.T) {
	t.Parallel()
	// 3 aggregates of 3 records; 4 records per request:
	// req1 = A0 A1 A2 B0, req2 = B1 B2 C0 C1, req3 = C2.
	data := []string{"a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2"}
	tests := []struct {
		name      string
		second    reply
		failed    []int
		requests  int
		permanent bool
	}{
		{"ok", reply{status: 200}, nil, 3, false},
		{"retryable 2nd request: B (half delivered) and C fail", reply{status: 500}, []int{1, 2}, 2, false},
		{"permanent 2nd request: B and C dead-lettered, 3rd still sent", reply{status: 403}, []int{1, 2}, 3, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := batchtest.Build(t, 3, 0, batchtest.Records(data...)...)
			require.Len(t, b.Records, 3)
			rc := &recorder{script: []reply{{status: 200}, tc.second, {status: 200}}}
			srv := startServer(t, rc)
			o := newOutput(t, config(srv.URL, func(c *Config) { c.MaxRequestRecords = 4 }))

			err := o.Send(t.Context(), b)

			reqs := rc.requests()
			require.Len(t, reqs, tc.requests)
			require.Equal(t, lines("a0", "a1", "a2", "b0"), string(reqs[0].Body))
			require.Equal(t, lines("b1", "b2", "c0", "c1"), string(reqs[1].Body))
			if tc.failed == nil {
				require.NoError(t, err)
				return
			}
			pe := requirePartial(t, err, tc.failed...)
			require.Equal(t, tc.permanent, outputs.IsPermanent(pe.Err))
		})
	}
}

func TestSendAggregates_KafkaRESTRetriesTheWholeAggregateAndRejectsOneRecord(t *testing.T) {
	t.Parallel()
	// A = ok0 ok1 retry2, B = ok3 ok4 ok5, C = ok6 perm7 ok8.
	data := []string{"ok0", "ok1", "retry2", "ok3", "ok4", "ok5", "ok6", "perm7", "ok8"}
	b := batchtest.Build(t, 3, 0, batchtest.Records(data...)...)
	rc := &recorder{respond: func(r request) reply { return kafkaOK(t, r) }}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format = FormatKafkaRESTv2 }))

	err := o.Send(t.Context(), b)

	// A fails whole (retried); in C only perm7 is rejected, on its own.
	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	require.Len(t, re.Rejected, 1)
	require.Equal(t, 2, re.Rejected[0].Record)
	require.Equal(t, 1, re.Rejected[0].UserRecord)
	require.Contains(t, re.Rejected[0].Reason, "error_code 1")
	pe := requirePartial(t, re.Err, 0)
	require.False(t, outputs.IsPermanent(pe.Err), "A is retryable")
	require.Contains(t, pe.Reasons[0], "error_code 2")

	// Only C left: delivered but for perm7.
	err = o.Send(t.Context(), outputs.Batch{Records: b.Records[2:]})
	require.ErrorAs(t, err, &re)
	require.NoError(t, re.Err)
	require.Equal(t, []outputs.RejectedRecord{{Record: 0, UserRecord: 1, Reason: re.Rejected[0].Reason}}, re.Rejected)
}
