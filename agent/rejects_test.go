package agent

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// appendAggregates spools n aggregates of per user records "a<i>-<k>".
func (r *senderRig) appendAggregates(n, per int) {
	r.t.Helper()
	all := aggregate.HashKey{Hi: math.MaxUint64, Lo: math.MaxUint64}
	shards, err := aggregate.NewShardMap([]aggregate.Shard{{ID: "s", End: all}})
	require.NoError(r.t, err)
	bld, err := aggregate.NewBuilder(aggregate.Config{MaxRecords: per}, shards)
	require.NoError(r.t, err)
	emit := func(_ int, a *aggregate.Aggregate) error {
		_, err := r.spool.Append(r.t.Context(), a.AppendEntry(nil))
		return err
	}
	for i := range n {
		for k := range per {
			_, err := bld.Add(aggregate.Record{PartitionKey: fmt.Sprintf("pk%d-%d", i, k), Data: fmt.Appendf(nil, "a%d-%d", i, k)}, time.Unix(0, 0), emit)
			require.NoError(r.t, err)
		}
	}
	require.NoError(r.t, bld.FlushAll(emit))
}

func TestSender_UserRecordsRejectedAloneAreDeadLetteredTheRestDelivered(t *testing.T) {
	// Batch of 3 aggregates of 4: the output rejects a1-2 on its own and
	// fails aggregate 2 retryably once (which also held a rejected record:
	// it is retried whole, not dead-lettered).
	first := true
	out := newScripted("o", func(b outputs.Batch) error {
		if !first {
			return nil
		}
		first = false
		require.Len(t, b.Records, 3)
		return &outputs.RejectedRecordsError{
			Rejected: []outputs.RejectedRecord{{Record: 1, UserRecord: 2, Reason: "http: POST http://h/i?api_key=REDACTED: 413 too large"}},
			Err:      &outputs.PartialError{Failed: []int{2}, Reasons: []string{"503"}, Err: errors.New("503")},
		}
	})
	r := newSenderRig(t, out, nil, nil)
	r.appendAggregates(3, 4)
	r.runUntilDrained()

	dl := r.deadLettered()
	require.Len(t, dl, 1, "only the user record rejected alone")
	require.Equal(t, "a1-2", *dl[0].Text)
	require.Equal(t, "pk1-2", dl[0].PartitionKey)
	require.Contains(t, dl[0].Reason, "413 too large")
	require.Equal(t, "o", dl[0].Output)
	require.Equal(t, 2, out.calls, "only the retryable aggregate is sent again")
	require.Equal(t, int64(1), r.dlq.count.Load())
}

func TestSender_RejectedUserRecordsWithoutDeadLetterFileAreSentAgain(t *testing.T) {
	calls := 0
	out := newScripted("o", func(b outputs.Batch) error {
		calls++
		return &outputs.RejectedRecordsError{Rejected: []outputs.RejectedRecord{{Record: 0, UserRecord: 0, Reason: "bad"}}}
	})
	r := newSenderRig(t, out, nil, nil)
	r.appendAggregates(1, 3)
	// The state directory cannot take the dead-letter file at first.
	r.dlq.dir = r.dir + "/missing/\x00"
	done := make(chan struct{})
	go func() {
		defer close(done)
		require.Eventually(t, func() bool { out.mu.Lock(); defer out.mu.Unlock(); return out.calls >= 2 }, 10*time.Second, time.Millisecond)
		r.dlq.mu.Lock()
		r.dlq.dir = r.dir
		r.dlq.mu.Unlock()
	}()
	r.runUntilDrained()
	<-done
	require.Len(t, r.deadLettered(), 1)
	require.GreaterOrEqual(t, calls, 2, "the entry stayed until its rejected record was dead-lettered")
}
