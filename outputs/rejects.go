package outputs

import (
	"fmt"
)

// RejectedRecord names one user record the destination rejected for good,
// on its own, inside a Kinesis record of the batch that is otherwise
// delivered.
type RejectedRecord struct {
	Record     int    // index into Batch.Records
	UserRecord int    // index of the user record inside that Kinesis record (0 for a plain record)
	Reason     string // human-readable, for the dead-letter file; no secrets
}

// RejectedRecordsError reports user records rejected for good inside Kinesis
// records that are otherwise delivered: the destination refused each of them
// on its own (an HTTP 413 or 400 for a request of that one record, a
// per-record error of a produce response), while it took the other user
// records of the same Kinesis record. The sender dead-letters exactly the
// listed user records and treats the rest of their Kinesis records as
// delivered.
//
// Err is the outcome of the rest of the batch, classified as Send's result
// is: nil when everything else was delivered, else a *PartialError (whose
// Failed never names a Record listed in Rejected), a Permanent, Throttle or
// retryable error. Unwrap returns Err, so a sender that does not know this
// type still sees the rest of the outcome (and retries the rejected user
// records' Kinesis records whole when Err is nil: it must know the type).
type RejectedRecordsError struct {
	Rejected []RejectedRecord
	Err      error
}

func (e *RejectedRecordsError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%d user records rejected: %s", len(e.Rejected), e.first())
	}
	return fmt.Sprintf("%d user records rejected: %s; and %v", len(e.Rejected), e.first(), e.Err)
}

func (e *RejectedRecordsError) first() string {
	if len(e.Rejected) == 0 {
		return ""
	}
	return e.Rejected[0].Reason
}

func (e *RejectedRecordsError) Unwrap() error { return e.Err }

// WithRejected returns err unchanged when rejected is empty, else a
// *RejectedRecordsError listing rejected whose Err is err.
func WithRejected(rejected []RejectedRecord, err error) error {
	if len(rejected) == 0 {
		return err
	}
	return &RejectedRecordsError{Rejected: rejected, Err: err}
}
