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
// a Firehose record (over max_record_bytes, with its "\n") is rejected on its
// own (outputs.RejectedRecordsError: dead-lettered with the reason "user
// record of N bytes, more than max_record_bytes L"), the user records
// aggregated with it delivered; the Firehose records around it are cut there.
//
// Errors: per-record and whole-request ServiceUnavailableException (how
// Firehose throttles) and LimitExceededException are outputs.Throttle. A
// request refused whole as invalid (InvalidArgumentException,
// ValidationException, SerializationException: too large, a record Firehose
// refuses) is sent again in two halves, recursively, in order, down to single
// Firehose records, and a Firehose record of joined lines refused alone in two
// records of half its lines each, down to single user records; only a user
// record refused alone is rejected (with Firehose's answer), the others
// delivered. Splits are
// bounded: at most 128 per Send (maxSplits, as the HTTP output's after 400s),
// then a refused request's records are rejected unsplit ("not split further").
// A batch record all of whose user records are rejected is rejected whole
// (outputs.PartialError, Permanent). ResourceNotFoundException (logged
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
// agent_firehose_failed_records_total{code} (code RecordTooLarge: a user
// record over max_record_bytes), agent_firehose_split_requests_total{code}.
package firehose
