package http

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

// limitServer accepts ndjson (or a JSON array, or kafka-rest-v2) bodies of
// at most limit bytes and answers 413 to larger ones, like a proxy with a
// body limit. It counts every delivered user record.
type limitServer struct {
	limit  int
	format string

	mu       sync.Mutex
	got      map[string]int
	too      int // 413 answers
	requests int
}

func (ls *limitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body bytes.Buffer
	_, _ = body.ReadFrom(r.Body)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.requests++
	if body.Len() > ls.limit {
		ls.too++
		http.Error(w, "request entity too large", http.StatusRequestEntityTooLarge)
		return
	}
	var recs []string
	switch ls.format {
	case FormatJSON:
		if err := json.Unmarshal(body.Bytes(), &recs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	case FormatKafkaRESTv2:
		var req struct {
			Records []struct {
				Value []byte `json:"value"`
			} `json:"records"`
		}
		if err := json.Unmarshal(body.Bytes(), &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		type off struct {
			Partition int `json:"partition"`
			Offset    int `json:"offset"`
		}
		offs := make([]off, len(req.Records))
		for i, rec := range req.Records {
			recs = append(recs, string(rec.Value))
			offs[i].Offset = i
		}
		out, _ := json.Marshal(map[string]any{"offsets": offs})
		defer w.Write(out)
	default:
		sc := bufio.NewScanner(&body)
		for sc.Scan() {
			recs = append(recs, sc.Text())
		}
	}
	for _, rec := range recs {
		ls.got[rec]++
	}
}

func numbered(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		s := fmt.Sprintf("rec%05d ", i)
		out[i] = s + strings.Repeat("x", size-len(s))
	}
	return out
}

func TestSend_413SplitsDownToWhatFitsAndLearnsTheLimit(t *testing.T) {
	t.Parallel()
	for _, format := range []string{FormatNDJSON, FormatJSON, FormatKafkaRESTv2} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			ls := &limitServer{limit: 4 << 10, format: format, got: map[string]int{}}
			srv := httptest.NewServer(ls)
			t.Cleanup(srv.Close)
			reg := prometheus.NewRegistry()
			o, err := New("test", config(srv.URL, func(c *Config) { c.Format, c.Compression = format, CompressionNone }), Settings{Metrics: reg})
			require.NoError(t, err)
			t.Cleanup(func() { _ = o.Close(t.Context()) })

			data := numbered(400, 100) // ~40 KB: ten times the server's limit
			require.NoError(t, o.Send(t.Context(), batchtest.Build(t, 50, 0, batchtest.Records(data...)...)))
			ls.mu.Lock()
			for _, d := range data {
				require.Equal(t, 1, ls.got[d], d)
			}
			require.Positive(t, ls.too)
			ls.too = 0
			ls.mu.Unlock()
			require.LessOrEqual(t, o.requestLimit(), 4<<10, "a smaller limit is learned")
			require.Equal(t, float64(o.requestLimit()), testutil.ToFloat64(o.metrics.limit))
			require.Positive(t, testutil.ToFloat64(o.metrics.splits.WithLabelValues("413")))

			// Later requests are packed to the learned limit: no more 413s.
			require.NoError(t, o.Send(t.Context(), batchtest.Build(t, 50, 0, batchtest.Records(data...)...)))
			ls.mu.Lock()
			defer ls.mu.Unlock()
			require.Zero(t, ls.too)
			for _, d := range data {
				require.Equal(t, 2, ls.got[d], d)
			}
		})
	}
}

func TestSend_413OfOneOversizedUserRecordRejectsOnlyIt(t *testing.T) {
	t.Parallel()
	ls := &limitServer{limit: 1 << 10, got: map[string]int{}}
	srv := httptest.NewServer(ls)
	t.Cleanup(srv.Close)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Compression = CompressionNone }))

	data := numbered(12, 50)
	big := "big " + strings.Repeat("y", 2<<10)
	data[7] = big // in the second aggregate of 5, at index 2
	b := batchtest.Build(t, 5, 0, batchtest.Records(data...)...)
	require.Len(t, b.Records, 3)

	err := o.Send(t.Context(), b)

	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	require.NoError(t, re.Err, "everything else was delivered")
	require.Len(t, re.Rejected, 1)
	require.Equal(t, 1, re.Rejected[0].Record)
	require.Equal(t, 2, re.Rejected[0].UserRecord)
	require.Contains(t, re.Rejected[0].Reason, "413")
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, d := range data {
		want := 1
		if d == big {
			want = 0
		}
		require.Equal(t, want, ls.got[d], d)
	}
}

func TestSend_400OfManyRecordsIsSplitOnlyTheBadOneRejected(t *testing.T) {
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
	o := newOutput(t, config(srv.URL))
	data := numbered(20, 20)
	data[3], data[14] = "bad3", "bad14"
	b := batchtest.Build(t, 10, 0, batchtest.Records(data...)...)

	err := o.Send(t.Context(), b)

	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	require.NoError(t, re.Err)
	require.Len(t, re.Rejected, 2)
	require.Equal(t, outputs.RejectedRecord{Record: 0, UserRecord: 3, Reason: re.Rejected[0].Reason}, re.Rejected[0])
	require.Equal(t, outputs.RejectedRecord{Record: 1, UserRecord: 4, Reason: re.Rejected[1].Reason}, re.Rejected[1])
	require.Contains(t, re.Rejected[0].Reason, "schema mismatch")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 18)
	for _, d := range data {
		if !strings.HasPrefix(d, "bad") {
			require.Equal(t, 1, got[d], d)
		}
	}
}

func TestSend_400OfASingleRecordIsPermanent(t *testing.T) {
	t.Parallel()
	rc := &recorder{script: []reply{{status: 400, body: "no"}}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL))
	err := o.Send(t.Context(), plainBatch("a"))
	require.True(t, outputs.IsPermanent(err))
	require.Len(t, rc.requests(), 1)
}

func TestSend_RetryableFailureInASplitStopsTheRest(t *testing.T) {
	t.Parallel()
	// The whole request gets 413, its first half 503: the second half is
	// not sent and both fail retryably.
	rc := &recorder{script: []reply{{status: 413}, {status: 503}, {status: 200}}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL))
	err := o.Send(t.Context(), plainBatch("a", "b", "c", "d"))
	requireRetryable(t, err)
	require.Len(t, rc.requests(), 2)
}

func TestSend_KafkaREST2xxWithoutOffsetsIsTakenAsDelivered(t *testing.T) {
	t.Parallel()
	for _, body := range []string{``, `{}`, `{"offsets":null}`, `<html>ok</html>`} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, &recorder{script: []reply{{status: 200, body: body}}})
			reg := prometheus.NewRegistry()
			o, err := New("test", config(srv.URL, func(c *Config) { c.Format = FormatKafkaRESTv2 }), Settings{Metrics: reg})
			require.NoError(t, err)
			t.Cleanup(func() { _ = o.Close(t.Context()) })
			require.NoError(t, o.Send(t.Context(), plainBatch("a", "b")))
			require.Equal(t, 2.0, testutil.ToFloat64(o.metrics.unconfirmed))
		})
	}
}

func TestSend_SecretsOfTheURLAreInNoError(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://bob:"+secret+"@elsewhere.example/x?token="+secret)
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad request to http://"+r.Host+r.URL.String(), http.StatusForbidden)
	}))
	t.Cleanup(echo.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	for name, base := range map[string]string{"307 location": redirect.URL, "body echoes the url": echo.URL, "connection refused": down.URL} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u := strings.Replace(base, "http://", "http://user:"+secret+"@", 1) + "/ingest?api_key=" + secret
			o := newOutput(t, config(u))
			err := o.Send(t.Context(), plainBatch("a"))
			require.Error(t, err)
			require.NotContains(t, err.Error(), secret)
			require.Contains(t, err.Error(), "api_key=REDACTED")
		})
	}
}

func TestConfig_ValidationErrorsHideURLSecrets(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://u:s3cret@ho st/?k=s3cret", "http:///path?api_key=s3cret", "http://h/%zz?api_key=s3cret"} {
		err := config(u).Validate()
		require.Error(t, err, u)
		require.NotContains(t, err.Error(), "s3cret")
	}
}

func TestSend_400ForEveryRecordIsSplitABoundedNumberOfTimes(t *testing.T) {
	t.Parallel()
	rc := &recorder{script: []reply{{status: 400, body: "all bad"}}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL))
	data := numbered(2000, 10)
	b := batchtest.Build(t, 100, 0, batchtest.Records(data...)...)

	err := o.Send(t.Context(), b)

	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	require.NoError(t, re.Err)
	require.Len(t, re.Rejected, 2000, "every record is rejected, each on its own")
	require.LessOrEqual(t, len(rc.requests()), 1+2*maxBadRequestSplits)
	seen := map[[2]int]bool{}
	for _, r := range re.Rejected {
		seen[[2]int{r.Record, r.UserRecord}] = true
		require.Contains(t, r.Reason, "all bad")
	}
	require.Len(t, seen, 2000)
}
