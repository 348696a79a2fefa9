package http

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs"
)

func TestSend_SplitByRecords(t *testing.T) {
	t.Parallel()
	rc := &recorder{}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.MaxRequestRecords = 2 }))

	require.NoError(t, o.Send(t.Context(), plainBatch("a", "b", "c", "d", "e")))

	var bodies []string
	for _, r := range rc.requests() {
		bodies = append(bodies, string(r.Body))
	}
	require.Equal(t, []string{lines("a", "b"), lines("c", "d"), lines("e")}, bodies)
}

func TestSend_SplitByBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format string
		max    int
		data   []string
		want   []string
	}{
		// "1234567\n" is 8 bytes: two fit in 16, not three.
		{FormatNDJSON, 16, []string{"1234567", "2234567", "3234567"}, []string{lines("1234567", "2234567"), lines("3234567")}},
		// the framing counts: `["1234567","2234567"]` is 21 bytes.
		{FormatJSON, 21, []string{"1234567", "2234567", "3234567"}, []string{`["1234567","2234567"]`, `["3234567"]`}},
		{FormatJSON, 20, []string{"1234567", "2234567"}, []string{`["1234567"]`, `["2234567"]`}},
		// a record larger than the limit goes alone.
		{FormatNDJSON, 16, []string{"a", strings.Repeat("x", 40), "b"}, []string{lines("a"), lines(strings.Repeat("x", 40)), lines("b")}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%d", tc.format, tc.max), func(t *testing.T) {
			t.Parallel()
			rc := &recorder{}
			srv := startServer(t, rc)
			o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.MaxRequestBytes = tc.format, units.ByteSize(tc.max) }))

			require.NoError(t, o.Send(t.Context(), plainBatch(tc.data...)))

			var bodies []string
			for _, r := range rc.requests() {
				bodies = append(bodies, string(r.Body))
				require.True(t, len(r.Body) <= tc.max || len(r.Body) > 30, "body %q over the limit", r.Body)
			}
			require.Equal(t, tc.want, bodies)
		})
	}
}

func TestSend_SplitFailureInSecondRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		data      []string
		second    reply
		failed    []int
		requests  int
		permanent bool
	}{
		{"retryable: only its records fail", []string{"a", "b", "c", "d"}, reply{status: 500}, []int{2, 3}, 2, false},
		{"retryable stops: later records fail unsent", []string{"a", "b", "c", "d", "e"}, reply{status: 502}, []int{2, 3, 4}, 2, false},
		{"permanent: later requests still sent", []string{"a", "b", "c", "d", "e"}, reply{status: 403, body: "bad"}, []int{2, 3}, 3, true},
		{"throttle stops", []string{"a", "b", "c", "d", "e"}, reply{status: 429, header: map[string]string{"Retry-After": "3"}}, []int{2, 3, 4}, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := &recorder{script: []reply{{status: 200}, tc.second, {status: 200}}}
			srv := startServer(t, rc)
			o := newOutput(t, config(srv.URL, func(c *Config) { c.MaxRequestRecords = 2 }))

			err := o.Send(t.Context(), plainBatch(tc.data...))

			pe := requirePartial(t, err, tc.failed...)
			require.Equal(t, tc.permanent, outputs.IsPermanent(err))
			require.Len(t, rc.requests(), tc.requests)
			require.Contains(t, pe.Reasons[0], fmt.Sprint(tc.second.status))
			if tc.second.status == http.StatusTooManyRequests {
				var te *outputs.ThrottleError
				require.ErrorAs(t, err, &te)
				require.Equal(t, "3s", te.Delay.String())
			}
		})
	}
}

func TestSend_MixedPermanentAndRetryableIsRetryable(t *testing.T) {
	t.Parallel()
	rc := &recorder{script: []reply{{status: 400}, {status: 200}, {status: 503}}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.MaxRequestRecords = 1 }))

	err := o.Send(t.Context(), plainBatch("a", "b", "c", "d"))

	pe := requirePartial(t, err, 0, 2, 3)
	require.False(t, outputs.IsPermanent(pe), "the rejected record fails again alone and is dead-lettered then")
	require.Contains(t, pe.Reasons[0], "400")
	require.Contains(t, pe.Reasons[1], "503")
}

// TestSend_Concurrent checks Send is safe for concurrent use (run with -race)
// and that buffers from the pools never mix batches.
func TestSend_Concurrent(t *testing.T) {
	t.Parallel()
	var total atomic.Int64
	rc := &recorder{respond: func(r request) reply {
		for _, l := range strings.Split(strings.TrimSuffix(string(r.Body), "\n"), "\n") {
			if !strings.HasPrefix(l, "rec-") {
				return reply{status: 400, body: "corrupt line " + l}
			}
			total.Add(1)
		}
		return reply{status: 200}
	}}
	srv := startServer(t, rc)
	for _, comp := range []string{CompressionGzip, CompressionNone} {
		total.Store(0)
		o := newOutput(t, config(srv.URL, func(c *Config) { c.Compression, c.MaxRequestRecords = comp, 7 }))
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 20 {
					data := make([]string, 25)
					for j := range data {
						data[j] = fmt.Sprintf("rec-%d-%d-%d-%s", g, i, j, strings.Repeat("z", j*10))
					}
					require.NoError(t, o.Send(t.Context(), plainBatch(data...)))
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, 8*20*25, total.Load())
	}
}

// TestSend_EarlyResponseDoesNotRace: a server that answers before reading a
// large body leaves the transport reading it after Do returned; the pooled
// buffer must not be reused under it (run with -race).
func TestSend_EarlyResponseDoesNotRace(t *testing.T) {
	t.Parallel()
	srv := startServerFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusBadRequest)
	})
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Compression = CompressionNone }))
	big := strings.Repeat("y", 1<<20)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				err := o.Send(t.Context(), plainBatch(big, big))
				require.Error(t, err)
			}
		})
	}
	wg.Wait()
}

func TestSend_UndecodableRecordIsPermanent(t *testing.T) {
	t.Parallel()
	rc := &recorder{}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Compression = CompressionNone }))
	b := plainBatch("a", "", "c")
	b.Records[1] = aggregate.Aggregate{PartitionKey: "a", Aggregated: true, Body: []byte{0xff, 0xff, 0xff}, Count: 2}

	err := o.Send(t.Context(), b)

	pe := requirePartial(t, err, 1)
	require.True(t, outputs.IsPermanent(pe.Err))
	require.Contains(t, pe.Reasons[0], "decode record 1 of the batch")
	require.Equal(t, lines("a", "c"), string(rc.requests()[0].Body))
}
