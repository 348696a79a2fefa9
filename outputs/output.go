// Package outputs defines the contract between the agent's sender and the
// destinations it delivers to. Each sub-package (outputs/http, outputs/kinesis,
// outputs/kafka, ...) translates a Batch into its destination's requests and
// classifies the result. Outputs never retry, sleep or buffer: retry, backoff,
// failover and metrics live once, in the agent's sender.
package outputs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kplagent/agent/aggregate"
)

// Batch is what the sender hands to an output in one Send call: one or more
// spool entries, each one Kinesis record (a KPL aggregate of user records, or a
// single plain user record). Records alias the sender's buffers and are valid
// only for the duration of Send.
type Batch struct {
	Records []aggregate.Aggregate
}

// UserRecords returns the number of user records in the batch.
func (b Batch) UserRecords() int {
	n := 0
	for i := range b.Records {
		n += b.Records[i].Count
	}
	return n
}

// Output delivers batches to one destination.
//
// The agent's sender calls Send from up to its configured number of in-flight
// goroutines at once, so Send must be safe for concurrent use. Send returns:
//   - nil: every record of the batch was delivered;
//   - a *PartialError: the records at Failed were not delivered (retry only
//     those), all the others were;
//   - an error wrapped by Permanent: the destination rejected the batch (or the
//     records named by a PartialError whose Err is permanent) and retrying
//     cannot help; the sender dead-letters it;
//   - an error wrapped by Throttle: retry no sooner than its delay;
//   - a *RejectedRecordsError: the user records it lists were rejected for
//     good on their own (dead-letter exactly those); its Err classifies the
//     rest of the batch as above (nil: all the rest was delivered);
//   - any other error: retryable with backoff (network, 5xx, timeouts).
//
// Close releases connections; it is called once after the last Send returned,
// and is safe to call without a Send.
type Output interface {
	Name() string
	Send(ctx context.Context, b Batch) error
	Close(ctx context.Context) error
}

// SendTimeouter is implemented by outputs whose Send is bounded by a timeout
// of their own (a request's, a produce's). The agent reports a send in
// flight for more than half of it (at most 10 s) as stalled (agent status).
type SendTimeouter interface {
	SendTimeout() time.Duration
}

// WaitCauser is implemented by outputs that may know why a send waits for
// its answer while it waits (a Kafka broker that cannot be connected to, as
// the producer dials it again inside the send): the agent's warning about a
// stalled output names it. nil when the output knows of nothing wrong. Safe
// for concurrent use.
type WaitCauser interface {
	WaitCause() error
}

// Healthchecker is implemented by outputs that can tell whether their
// destination is reachable without sending data (used for failover recovery).
type Healthchecker interface {
	Healthcheck(ctx context.Context) error
}

// PartialError reports that only some records of a batch failed.
// Failed holds indexes into Batch.Records, ascending. Reasons, when not nil,
// has one human-readable reason per entry of Failed (for the dead-letter file).
// Err classifies the failed records: wrap it with Permanent when those records
// must not be retried.
type PartialError struct {
	Failed  []int
	Reasons []string
	Err     error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%d of the batch's records failed: %v", len(e.Failed), e.Err)
}

func (e *PartialError) Unwrap() error { return e.Err }

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not retryable.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err (or an error it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// ThrottleError asks the sender to wait at least Delay before retrying.
type ThrottleError struct {
	Delay time.Duration
	Err   error
}

func (e *ThrottleError) Error() string {
	return fmt.Sprintf("throttled (retry after %s): %v", e.Delay, e.Err)
}
func (e *ThrottleError) Unwrap() error { return e.Err }

// Throttle marks err as retryable no sooner than d (0 means the sender's own backoff).
func Throttle(err error, d time.Duration) error {
	return &ThrottleError{Delay: d, Err: err}
}

// Rejected reports records an output could not encode or the destination
// refused for good: nil when bad is empty, a Permanent error when every one
// of the batch's n records is bad, else a PartialError of the bad ones (with
// their reasons) whose error is Permanent. first is the first record's error.
func Rejected(bad []int, reasons []string, n int, first error) error {
	switch {
	case len(bad) == 0:
		return nil
	case len(bad) == n:
		return Permanent(first)
	}
	return &PartialError{Failed: bad, Reasons: reasons, Err: Permanent(first)}
}
