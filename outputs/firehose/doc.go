// Package firehose is the Amazon Data Firehose output: it puts the flow's
// user records with PutRecordBatch (at most 500 records and 4 MiB a
// request, 1,000 KiB a record).
//
// Firehose has no KPL format (only a Kinesis stream as source deaggregates),
// so Send always deaggregates. With aggregate_lines (default) the user
// records of one batch record are joined, each ended by "\n" (append_newline,
// default), into Firehose records of up to max_record_bytes, as the Kinesis
// Agent does: Firehose bills per record in 5 KB units, and the objects it
// writes hold one record per line. A Firehose record never mixes batch
// records, so a failed one is reported for its batch record alone
// (outputs.PartialError); a batch record sent as several Firehose records is
// retried whole when one fails (at-least-once). A user record too large for
// a Firehose record is rejected permanently (dead-lettered) with its reason.
//
// Errors: per-record and whole-request ServiceUnavailableException (how
// Firehose throttles) and LimitExceededException are outputs.Throttle;
// InvalidArgumentException is Permanent; ResourceNotFoundException (logged
// at most every 30 s), KMS and access errors, 5xx and network errors are
// retryable. The SDK's retries are off: the agent's sender retries.
//
// The API mirrors outputs/kinesis: Config (YAML block), DefaultConfig,
// Validate, MaxRecordBytes (the largest user record it can send), FromURL
// for firehose://STREAM?region=R[&endpoint=URL][&role_arn=ARN]
// [&aggregate_lines=false][&append_newline=false], Settings and New;
// credentials, region, endpoint and role_arn work as for Kinesis
// (internal/awsconf). Metrics, labelled output and stream:
// agent_firehose_user_records_put_total, agent_firehose_records_put_total,
// agent_firehose_bytes_put_total, agent_firehose_throttled_records_total,
// agent_firehose_failed_records_total{code}.
package firehose
