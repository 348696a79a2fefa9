package http

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

// rawReceiver takes format raw requests of at most limit bytes (413 above),
// decodes each body with the aggregate package and keeps the user records
// in the order received, checking the keys of every Kinesis record.
type rawReceiver struct {
	t     *testing.T
	limit int
	// bad, when set: a request holding a user record that contains it is
	// refused with 400, naming the record.
	bad string

	mu       sync.Mutex
	got      []aggregate.Record
	too      int // 413 answers
	refused  int // 400 answers for bad
	requests int
}

func (rr *rawReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.requests++
	if len(body) > rr.limit {
		rr.too++
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	pk, ehk := r.Header.Get("X-Partition-Key"), r.Header.Get("X-Explicit-Hash-Key")
	recs, err := aggregate.DecodeKinesisRecord(pk, ehk, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if aggregate.IsAggregated(body) {
		// As the KPL sends an aggregate: key "a", the explicit hash key of
		// its first user record.
		require.Equal(rr.t, aggregate.AggregatedPartitionKey, pk)
		want := recs[0].ExplicitHashKey
		if want == "" {
			want = aggregate.PartitionKeyHash(recs[0].PartitionKey).String()
		}
		require.Equal(rr.t, want, ehk)
		require.Greater(rr.t, len(recs), 1, "an aggregate of one record is sent plain")
	}
	for i := range recs {
		if rr.bad != "" && strings.Contains(string(recs[i].Data), rr.bad) {
			rr.refused++
			http.Error(w, "schema mismatch in "+string(recs[i].Data), http.StatusBadRequest)
			return
		}
	}
	for i := range recs {
		recs[i].Data = append([]byte(nil), recs[i].Data...)
	}
	rr.got = append(rr.got, recs...)
}

func (rr *rawReceiver) take() (got []aggregate.Record, too int) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	got, too = rr.got, rr.too
	rr.got, rr.too = nil, 0
	return got, too
}

// keyedRecords makes n user records of about size bytes, every seventh with
// an explicit hash key.
func keyedRecords(n, size int) []aggregate.Record {
	recs := batchtest.Records(numbered(n, size)...)
	for i := range recs {
		if i%7 == 3 {
			recs[i].ExplicitHashKey = fmt.Sprint(uint64(i) * 1_000_003)
		}
	}
	return recs
}

// requireSame asserts got holds want's records, keys included, in order.
func requireSame(t *testing.T, want, got []aggregate.Record) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, string(want[i].Data), string(got[i].Data), "record %d", i)
		require.Equal(t, want[i].PartitionKey, got[i].PartitionKey, "record %d", i)
		require.Equal(t, want[i].ExplicitHashKey, got[i].ExplicitHashKey, "record %d", i)
	}
}

func TestSendRaw_413SplitsTheAggregateDownToWhatFits(t *testing.T) {
	t.Parallel()
	rr := &rawReceiver{t: t, limit: 2000}
	srv := httptest.NewServer(rr)
	t.Cleanup(srv.Close)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatRaw, CompressionNone }))

	recs := keyedRecords(200, 60) // one aggregate of ~14 KB: seven times the limit
	b := batchtest.Build(t, 200, 0, recs...)
	require.Len(t, b.Records, 1)

	require.NoError(t, o.Send(t.Context(), b))
	got, too := rr.take()
	requireSame(t, recs, got)
	require.Positive(t, too)
	require.Less(t, o.requestLimit(), 14000, "the 413 taught a smaller size")

	// The next aggregates are split before they are sent to the learned
	// size (halving on each 413): fewer 413s, then none.
	for _, per := range []int{100, 200, 50} {
		first := too
		require.NoError(t, o.Send(t.Context(), batchtest.Build(t, per, 0, recs...)))
		got, too = rr.take()
		requireSame(t, recs, got)
		require.Less(t, too, max(first, 1))
	}
	require.Zero(t, too)
}

func TestSendRaw_413RejectsOnlyTheUserRecordTooLargeAlone(t *testing.T) {
	t.Parallel()
	rr := &rawReceiver{t: t, limit: 2000}
	srv := httptest.NewServer(rr)
	t.Cleanup(srv.Close)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatRaw, CompressionNone }))

	recs := keyedRecords(60, 60)
	recs[37].Data = []byte("big " + strings.Repeat("y", 3000))
	recs[52].Data = []byte("big2 " + strings.Repeat("z", 2500))
	b := batchtest.Build(t, 30, 0, recs...) // records 37 and 52: user records 7 and 22 of the second aggregate
	require.Len(t, b.Records, 2)

	err := o.Send(t.Context(), b)
	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	require.NoError(t, re.Err, "everything else was delivered")
	require.Len(t, re.Rejected, 2)
	for i, want := range []int{7, 22} {
		require.Equal(t, 1, re.Rejected[i].Record)
		require.Equal(t, want, re.Rejected[i].UserRecord)
		require.Contains(t, re.Rejected[i].Reason, "413")
	}
	got, _ := rr.take()
	want := append(append([]aggregate.Record(nil), recs[:37]...), recs[38:52]...)
	want = append(want, recs[53:]...)
	requireSame(t, want, got)
}

func TestSendRaw_RetryablePartFailsTheAggregate(t *testing.T) {
	t.Parallel()
	// The whole aggregate is too large, its first half 503: the Kinesis
	// record is retried whole, the second half unsent.
	rc := &recorder{script: []reply{{status: 413}, {status: 503}, {status: 200}}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatRaw, CompressionNone }))

	err := o.Send(t.Context(), batchtest.Build(t, 10, 0, keyedRecords(10, 40)...))
	requireRetryable(t, err)
	var re *outputs.RejectedRecordsError
	require.False(t, errors.As(err, &re))
	require.Len(t, rc.requests(), 2)
}

func TestSendPacked_413SplitsAnAggregateTooLargeAlone(t *testing.T) {
	t.Parallel()
	data := userLines(300)
	data[123] = "big " + strings.Repeat("q", 5000)
	b := batchtest.Build(t, 150, 0, batchtest.Records(data...)...)
	require.Len(t, b.Records, 2)
	rcv := &packedReceiver{t: t, maxBody: 4 << 10}
	srv := startServerFunc(t, rcv.ServeHTTP)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatRawPacked, CompressionNone }))

	err := o.Send(t.Context(), b)
	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	require.NoError(t, re.Err)
	require.Equal(t, []outputs.RejectedRecord{{Record: 0, UserRecord: 123, Reason: re.Rejected[0].Reason}}, re.Rejected)
	require.Contains(t, re.Rejected[0].Reason, "413")
	want := append(append([]string(nil), data[:123]...), data[124:]...)
	require.Equal(t, want, rcv.received(), "every other record once, in order")
	require.Less(t, o.requestLimit(), 8<<10, "the 413s taught a smaller size")

	// Aggregates larger than the learned size (halving on each 413) are
	// split before they are sent: soon the only 413 left is the record
	// too large alone.
	var refused int
	for range 3 {
		rcv.mu.Lock()
		refused = rcv.refused
		rcv.users = nil
		rcv.mu.Unlock()
		err = o.Send(t.Context(), b)
		require.ErrorAs(t, err, &re)
		require.Len(t, re.Rejected, 1)
		require.Equal(t, 123, re.Rejected[0].UserRecord)
		require.Equal(t, want, rcv.received())
	}
	require.Equal(t, refused+1, rcv.refused)
}
