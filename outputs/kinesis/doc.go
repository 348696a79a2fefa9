// Package kinesis is the Kinesis Data Streams output: it puts the flow's
// Kinesis records (KPL aggregates, or plain user records) with PutRecords.
//
// # API for the agent
//
// The package follows the component shape of the other outputs: Config
// (YAML block, snake_case keys), DefaultConfig, Config.Validate (keys relative
// to the block, problems joined), Config.MaxRecordBytes (the stream's record
// limit, which the flow's aggregate.Config.RecordLimit and MaxBytes must stay
// within), FromURL for `agent tail --to kinesis://STREAM?region=R...`,
// Settings (Logger, UserAgent, Registerer, MaxConns) and New. *Output
// implements outputs.Output and outputs.Healthchecker (DescribeStreamSummary).
//
// The agent's flows do what follows (agent/flow.go); the type is
// registered by Type (component.go). The flow aggregates against the
// stream's shard map, so that every
// sub-record of an aggregate lies in the range of the shard it lands on (the
// KCL drops a whole aggregate otherwise). The output offers the map:
//
//	ShardMap(ctx) (*aggregate.ShardMap, error) // fetched on first call; then cached
//	ShardMapVersion() uint64                    // 0 before the first map, +1 per change
//	ShardMapChanged() <-chan struct{}           // closed at the next change
//	RefreshShardMap(ctx) error                  // fetch now (rarely needed)
//
// A flow calls ShardMap before aggregating its first record (retrying on
// error, as for a send), builds its aggregate.Builder with that map and
// remembers the version. Before adding records (or when ShardMapChanged
// fires) it compares ShardMapVersion with the version of its Builder; when
// it differs it flushes the Builder (FlushAll into the spool or the direct
// queue, as at an age flush) and builds a new one with the new map. No
// change to aggregate.Builder is needed for that; what is in the spool or in
// flight meanwhile is handled by Send, below.
//
// # Shard map
//
// ListShards is paginated (NextToken without the stream name) and only open
// shards are kept: shards with an ending sequence number (the closed parents
// of a split or merge) are left out. A map whose open shards do not cover
// the whole hash key space (a reshard half done) is refused and the current
// one stays. The map is refreshed in the background every shard_map_refresh
// (default 1m), when a Send finds it stale, and at once, inside Send, when a
// PutRecords result names another shard than the one predicted. Such
// triggered refreshes are spaced by a backoff (1s, doubling to 30s while the
// refreshes find no change, reset when the map changes), so a reshard does
// not become a ListShards storm.
//
// # Send
//
// Send routes every Kinesis record of the batch against the current map:
//
//   - An aggregate whose sub-records all lie in the range of the shard its
//     explicit hash key lands on is sent as it is (the MD5 trailer is added
//     here). One built against an older map (from the spool, or built while
//     the stream was resharded) whose sub-records would straddle shards is
//     split and re-aggregated against the current map (aggregate.Split):
//     translation, not retry. Checking costs an MD5 per distinct partition
//     key of the aggregate's key table.
//   - An aggregate that lands on a shard the map did not predict (a reshard
//     the map did not know yet) is checked against the map refreshed at
//     once: if that shard does not hold all of its sub-records it is failed,
//     and the sender's retry sends it split. The first copy is what a KCL
//     drops whole; a KCL that keeps the in-range sub-records sees those twice
//     (at-least-once).
//   - With aggregation: false each user record becomes a Kinesis record with
//     its own partition key and explicit hash key.
//   - Records Kinesis would refuse (larger than max_record_bytes, invalid
//     keys, a malformed aggregate) are rejected before sending, permanently,
//     with their reason: they go to the dead-letter file.
//
// The entries go out in PutRecords requests of at most max_request_records
// (500) and max_request_bytes (5 MiB). Only the batch records with a failed
// entry are reported (outputs.PartialError with the error codes as reasons):
// per-entry ProvisionedThroughputExceededException and KMSThrottlingException
// make the error a Throttle, InternalFailure and the rest plain retryable.
// A batch record sent as several entries (split, or deaggregated) is retried
// whole when one of its entries fails: the delivered ones are duplicated.
// Whole-request errors are classified: throttling (LimitExceededException,
// ThrottlingException, HTTP 429) is a Throttle; ValidationException and
// InvalidArgumentException are Permanent and the Send goes on with the next
// request; ResourceNotFoundException, access and KMS errors, 5xx, network
// errors and timeouts are retryable and stop the Send (the unsent records are
// failed with them). A missing stream and refused access are also logged, at
// most every 30 s. The SDK's own retries are off: the agent's sender retries.
//
// # Protocol
//
// PutRecords goes out in the CBOR form of the AWS JSON 1.1 protocol
// (Content-Type application/x-amz-cbor-1.1, what the Java SDK and the KPL
// send; protocol: cbor, the default): the records' data as CBOR byte
// strings instead of base64, so about a quarter fewer bytes to encode, to
// hash for SigV4 and to send. The body is written by hand
// (internal/awscbor, serialize.go) into a reused buffer, straight from the
// batch's aggregates: each is framed (magic, MD5 of the copy just made) as
// it is copied into the body, the only copy of its bytes, and the body's
// SHA-256 is computed as it is written, while in the CPU's cache, and
// handed to the SDK's SigV4 signer (which would otherwise read the body
// once more to hash it). Checking an aggregate against its shard reads its
// key tables and walks its records once. The response and
// errors ({"__type", "message"}) are read by a small CBOR decoder, or by the
// SDK's when the server answers JSON. protocol: json sends the SDK's JSON
// document (written by hand too) for proxies and emulators that speak only
// JSON. A CBOR answer that does not decode turns CBOR off for the output's
// life, with a warning: the request in question is retried in JSON (its
// records may arrive twice). kinesalite, for one, cuts its CBOR answers at
// 16 KiB (500 plain records). ListShards and DescribeStreamSummary are
// always JSON.
//
// # Rate limiting
//
// Each shard has two token buckets, bytes and records per second, at
// rate_limit percent (default 150, the KPL's RateLimit) of the shard limits
// (1 MiB/s, 1000 records/s), with one second of burst. Before each request
// Send reserves the tokens of its entries' shards and waits (honouring ctx:
// pacing, not retry) for the slowest; the wait is counted in
// agent_kinesis_rate_limit_wait_seconds_total. A shard that throttles anyway
// has its rate halved (at most every 500 ms, down to 1/32) and regains 10% of
// it per second without throttling (AIMD), so a backlog drains at the
// stream's capacity without a storm of throttling errors. rate_limit: off
// turns the limiter off.
//
// # Credentials
//
// The SDK's default chain: environment, shared config and credentials files
// (profile), SSO, web identity, ECS, IMDSv2. With role_arn the chain's
// credentials assume that role through STS (external_id, role_session_name,
// sts_endpoint); the temporary credentials are cached and refreshed 5
// minutes before they expire. endpoint overrides the Kinesis endpoint (VPC
// endpoints, emulators). Secrets never appear in logs, metrics or Validate's
// output, nor does a role_arn that is not an IAM role's ARN (it may be a
// secret pasted into the wrong key).
//
// The region is the region key, else AWS_REGION or AWS_DEFAULT_REGION, else
// the profile's, else the EC2 instance metadata's. CheckFiles (run by
// `agent validate` and before `agent run` starts anything) finds it the same
// way without a network call, taking the instance metadata as able to answer
// only on an EC2 instance (awsconf.Config.CheckRegion), and fails with New's
// message when there is none.
//
// # Metrics
//
// Registered on Settings.Registerer, labelled output and stream (with
// Settings.OutputLabelled, as the agent builds it, the output label is the
// registerer's own):
// agent_kinesis_user_records_put_total, agent_kinesis_records_put_total,
// agent_kinesis_bytes_put_total, agent_kinesis_put_payload_units_total (25 KB
// units per record, rounded up), agent_kinesis_throttled_records_total,
// agent_kinesis_failed_records_total{code}, agent_kinesis_shard_map_refreshes_total{result},
// agent_kinesis_shards, agent_kinesis_shard_mismatches_total,
// agent_kinesis_aggregates_split_total, agent_kinesis_rate_limit_wait_seconds_total,
// agent_kinesis_stream_not_found_total.
package kinesis
