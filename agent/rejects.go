package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// settleRejected handles the user records an output rejected on their own
// inside otherwise delivered Kinesis records (outputs.RejectedRecordsError):
// it dead-letters exactly those user records and returns the outcome of the
// rest of the batch, for deliver to act on as usual (nil: all the rest was
// delivered, so the rejected records' Kinesis records are released).
//
// pending maps the indexes of the sent batch to b's entries. If the
// dead-letter file cannot be written the whole Send is reported as a
// retryable failure: the entries stay, and are sent again (their delivered
// user records may be duplicated, none is lost).
func (s *sender) settleRejected(o *outputState, b *batch, pending []int, err error) error {
	var re *outputs.RejectedRecordsError
	if !errors.As(err, &re) {
		return err
	}
	if len(re.Rejected) == 0 {
		return re.Err
	}
	n, derr := s.dlq.writeUserRecords(s.flow, o.out.Name(), func(yield func(a *aggregate.Aggregate, idx int, reason string) error) error {
		for _, r := range re.Rejected {
			if r.Record < 0 || r.Record >= len(pending) {
				return fmt.Errorf("output %s reported record %d of a batch of %d", o.out.Name(), r.Record, len(pending))
			}
			if err := yield(&b.aggs[pending[r.Record]], r.UserRecord, "rejected: "+r.Reason); err != nil {
				return err
			}
		}
		return nil
	})
	if derr != nil {
		s.log.Error("cannot dead-letter rejected user records; their entries are sent again", "error", derr)
		return fmt.Errorf("flow %s: dead-letter rejected user records: %w", s.flow, derr)
	}
	o.metrics.deadLettered.Add(float64(n))
	s.deadLettered(o.out.Name(), int64(n), "rejected: "+re.Rejected[len(re.Rejected)-1].Reason)
	return re.Err
}

// writeUserRecords dead-letters single user records picked out of
// aggregates, in one synced write; it returns how many it wrote.
func (d *deadLetter) writeUserRecords(flow, output string, recs func(yield func(a *aggregate.Aggregate, idx int, reason string) error) error) (int, error) {
	now := time.Now().UTC()
	n := 0
	err := d.write(flow, func(emit func(DeadLetterRecord) error) error {
		n = 0
		return recs(func(a *aggregate.Aggregate, idx int, reason string) error {
			found := false
			k := 0
			err := aggregate.ForEach(a, func(pk, ehk, data []byte) error {
				if k == idx {
					found = true
					if err := emit(DeadLetterRecord{Time: now, Flow: flow, Output: output, Reason: reason,
						PartitionKey: string(pk), ExplicitHashKey: string(ehk), Data: data}); err != nil {
						return err
					}
				}
				k++
				return nil
			})
			switch {
			case err != nil:
				return err
			case !found:
				return fmt.Errorf("user record %d of an aggregate of %d", idx, k)
			}
			n++
			return nil
		})
	})
	return n, err
}
