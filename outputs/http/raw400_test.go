package http

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

func TestSendRaw_400SplitsTheAggregateAndRejectsOnlyTheBadRecord(t *testing.T) {
	t.Parallel()
	rr := &rawReceiver{t: t, limit: 1 << 20, bad: "BAD"}
	srv := startServerFunc(t, rr.ServeHTTP)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatRaw, CompressionNone }))

	recs := keyedRecords(60, 60)
	recs[41].Data = []byte("BAD record 41")
	b := batchtest.Build(t, 30, 0, recs...) // record 41: user record 11 of the second aggregate
	require.Len(t, b.Records, 2)
	require.True(t, b.Records[1].Aggregated)

	limit := o.requestLimit()
	err := o.Send(t.Context(), b)

	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	require.NoError(t, re.Err, "everything else was delivered")
	require.Equal(t, []outputs.RejectedRecord{{Record: 1, UserRecord: 11, Reason: re.Rejected[0].Reason}}, re.Rejected)
	require.Contains(t, re.Rejected[0].Reason, "400 Bad Request")
	require.Contains(t, re.Rejected[0].Reason, "schema mismatch in BAD record 41", "the server's answer is the reason")
	got, _ := rr.take()
	want := append(append([]aggregate.Record(nil), recs[:41]...), recs[42:]...)
	requireSame(t, want, got)
	rr.mu.Lock()
	defer rr.mu.Unlock()
	// Halving 30 records down to the bad one: about log2(30) refused parts.
	require.LessOrEqual(t, rr.refused, 7)
	require.Equal(t, limit, o.requestLimit(), "a 400 teaches no request size")
}

func TestSendRaw_400ForEveryRecordIsSplitABoundedNumberOfTimes(t *testing.T) {
	t.Parallel()
	rc := &recorder{script: []reply{{status: 400, body: "all bad"}}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatRaw, CompressionNone }))
	const aggs, per = 20, 100
	b := batchtest.Build(t, per, 0, batchtest.Records(numbered(aggs*per, 10)...)...)
	require.Len(t, b.Records, aggs)

	err := o.Send(t.Context(), b)

	// Every record is dead-lettered with the server's answer (alone, or
	// with its whole aggregate once the Send's splits are spent), and the
	// requests stay bounded: one per aggregate and two per split.
	require.Error(t, err)
	require.True(t, outputs.IsPermanent(err), "%v", err)
	require.LessOrEqual(t, len(rc.requests()), aggs+2*maxBadRequestSplits)
	require.Contains(t, err.Error(), "all bad")
	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	alone := map[int]int{}
	for _, r := range re.Rejected {
		alone[r.Record]++
		require.Contains(t, r.Reason, "all bad")
	}
	var pe *outputs.PartialError
	whole := map[int]bool{}
	if errors.As(re.Err, &pe) {
		for i, f := range pe.Failed {
			whole[f] = true
			require.Contains(t, pe.Reasons[i], "all bad")
		}
	}
	for i := range aggs {
		if whole[i] {
			require.Zero(t, alone[i], "aggregate %d: failed whole and in parts", i)
			continue
		}
		require.Equal(t, per, alone[i], "aggregate %d: every record rejected alone", i)
	}
	require.NotEmpty(t, whole, "the Send's splits ran out")
	require.NotEmpty(t, alone)
}
