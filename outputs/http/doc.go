// Package http is the HTTP output: it POSTs batches to an endpoint as ndjson,
// a JSON array, raw KPL records or Confluent REST Proxy v2 or v3 produce
// requests, and classifies each response for the agent's sender (see
// outputs.Output).
//
// # Requests
//
// A Batch is deaggregated into its user records, which are packed into
// requests of at most Config.MaxRequestRecords records and
// Config.MaxRequestBytes uncompressed bytes, sent one after the other (format
// raw sends one request per Kinesis record; raw-packed packs whole Kinesis
// records, see below). Concurrency comes from the sender calling Send from
// several goroutines. The body is compressed whole (Config.Compression:
// gzip, zstd or none) and Content-Encoding set accordingly.
//
// # raw-packed
//
// Content-Type application/vnd.kplagent.raw-packed.v1. The body is a
// sequence of frames, one per Kinesis record of the batch, in order, with
// nothing before, between or after them; integers are big-endian:
//
//	offset  size      field
//	0       4         data_len: length of data
//	4       2         pk_len: length of the partition key
//	6       1         ehk_len: length of the explicit hash key (0: none)
//	7       pk_len    partition key (UTF-8; "a" for an aggregate of several
//	                  user records, whose own keys are inside it)
//	        ehk_len   explicit hash key (decimal ASCII)
//	        data_len  data: what format raw posts for the record and Kinesis
//	                  would store: a KPL aggregate (magic F3 89 9A C2,
//	                  protobuf AggregatedRecord, MD5 of the protobuf) or a
//	                  plain record's bytes
//
// ParsePacked reads it. A request holds at most MaxRequestBytes
// (uncompressed; a single record larger than that goes alone) and
// MaxRequestRecords Kinesis records. Splits after a 413 or 400 are between
// Kinesis records. A Kinesis record refused on its own with 413 or 400 is
// split as format raw splits it (see Aggregates refused whole below), its
// parts sent as frames; refused on its own otherwise (other 4xx), or being
// a plain record, it is rejected whole (permanent: dead-lettered whole).
//
// # Aggregates refused whole (raw, raw-packed)
//
// A Kinesis record holding a KPL aggregate of several user records that the
// server refuses on its own with 413 (too large) or 400 (bad: a record the
// server cannot take, as Fluent Bit and Vector users expect one bad event
// to cost only itself) is decoded, and its user records are sent again as
// smaller Kinesis records: halves, recursively, in order, down to single
// user records. Each part is built as the aggregate.Builder (and the KPL)
// builds it: an aggregate of 2+ records (partition key "a", explicit hash
// key that of its first record, each record keeping its own keys inside)
// or, for one record, the plain record with its own keys (the
// X-Partition-Key and X-Explicit-Hash-Key headers of format raw). Only a
// user record refused on its own is rejected (an
// *outputs.RejectedRecordsError entry: dead-lettered alone with the status
// and the server's answer as reason, the rest of its aggregate delivered
// once); a part refused with another permanent status has each of its user
// records rejected so. A part that fails retryably stops the Send and fails
// its whole Kinesis record (retried whole: the parts delivered before
// arrive again). Splits after 413s count against the request's bound
// (1024) and lower the learned request size like any 413; a Kinesis record
// (raw) or part larger than the learned size is split before it is sent,
// costing no refused request. Splits after 400s count against a bound per
// Send (128: about 2·log2(n) requests find each bad record among n, and a
// server refusing everything costs at most 256 more requests per Send):
// past it, the rest of the aggregate being split is rejected record by
// record unsent, and a later aggregate refused with 400 is rejected whole;
// both can be replayed from the dead-letter file.
//
// # Classification
//
//   - 2xx: delivered.
//   - 429, and 503 with Retry-After: outputs.Throttle with the Retry-After
//     delay (seconds or an HTTP date; 0 when absent on a 429).
//   - 408, 5xx, network errors, timeouts: retryable.
//   - 3xx: permanent. Redirects are not followed (net/http would turn a
//     POST into a GET on 301/302/303); configure the final URL.
//   - 413, and 400 for a request of several user records: the request is
//     split in halves that are sent at once (no backoff: this is
//     translation, not retry), recursively down to single user records; only
//     a user record refused on its own is rejected. A 413 also lowers the
//     size later requests are packed to (half the refused body, halving again
//     on the next 413; for the output's lifetime; gauge
//     agent_output_http_request_bytes_limit), so the split costs once.
//     Splits are bounded per request (128 after 400s, 1024 after 413s):
//     past that, the records of a refused part are rejected one by one
//     unsent (a request of only bad records would otherwise cost two
//     requests per record); they can be replayed from the dead-letter file.
//   - other 4xx, and 400 for a single user record: permanent; the error (a
//     *StatusError) carries the status and up to 1 KiB of the response body.
//
// Failures are reported per Kinesis record (index into Batch.Records): when
// any user record of an aggregate is not delivered, the whole aggregate is
// reported failed and retried or dead-lettered, so its other user records may
// be delivered twice (at-least-once). The exception is a user record
// rejected on its own (a 413 or 400 for a request of that one record, a
// kafka-rest-v2 error_code 1): it is listed in an
// *outputs.RejectedRecordsError and the rest of its aggregate counts as
// delivered. When the batch needs several requests:
//   - a permanent rejection marks that request's records and sending goes on;
//   - a retryable failure or throttle stops the Send: that request's records
//     and all later ones are reported failed with that error;
//   - the result is nil, the classified error itself when every record
//     failed, or an *outputs.PartialError whose Err is permanent only when
//     every failed record was rejected permanently (a mix is retryable: the
//     rejected records fail again on their own and are dead-lettered then).
//
// # kafka-rest-v2
//
// The response's offsets array has one entry per record of the request, in
// order. error_code 1 (non-retriable Kafka exception) rejects that user
// record, error_code 2 (retriable) and any other non-null code are
// retryable. A 2xx response whose offsets array does not match the request
// is retryable (the records may be duplicated). A 2xx response with no
// offsets at all (empty, not JSON, or without "offsets") does not come from
// the REST Proxy (which always lists them) but from something in front of
// it: the records are taken as delivered as far as we can tell, counted in
// agent_output_http_unconfirmed_records_total and logged (at most once a
// minute). Resending could not get a better answer and would loop forever.
//
// # kafka-rest-v3
//
// The request is a stream of concatenated JSON records (binary key and value,
// base64) posted to .../v3/clusters/CLUSTER/topics/TOPIC/records with a
// Content-Length (not chunked); the 200 response is a stream of delivery
// reports, one per record, in order. error_code 200 is delivered; 400, 413,
// 415 and 422 reject that user record on its own (dead-lettered); any other
// code (401, 403, 404, 408, 429, 5xx) is retryable. Records after a missing
// or unreadable report are retryable; more reports than records make the
// whole request retryable.
//
// # Secrets in URLs
//
// Errors and logs name the URL with its user information and query values
// replaced by REDACTED (internal/redact), including the URLs inside
// net/http's errors, a redirect's Location and error response bodies.
package http
