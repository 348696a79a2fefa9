// Package kafka is the Kafka output: it produces batches to Apache Kafka (or
// a compatible broker: Amazon MSK, Redpanda, ...) with franz-go, and
// classifies each record's outcome for the agent's sender (see
// outputs.Output).
//
// # Records
//
// With format records (the default) each user record of a KPL aggregate is
// one Kafka record: value = the record's bytes, key = its partition key (no
// key with key: none). With format kpl each spool entry (a Kinesis record: a
// KPL aggregate with magic and MD5, or a plain record) is one Kafka record,
// for consumers that deaggregate; its key is the first user record's
// partition key (the flow's aggregator groups records by key when no shard
// map is in use, so it is every record's key). A batch of one user record
// is a plain Kinesis record (as the KPL sends it), whose explicit hash key
// Kinesis keeps beside the data; a Kafka record has no such place, so a
// plain record with an explicit hash key is sent as a KPL aggregate of that
// one record, the key in the aggregate's table (aggregate.Aggregate's
// AppendKinesisAggregate): a consumer finds every user record's explicit
// hash key the same way, in the table, whatever the size of its batch. A
// plain record without one is sent bare (its partition key is the Kafka
// key), as before. A header was the other choice: it would make consumers
// read explicit hash keys in two places, and KPL deaggregators (the KCL,
// aws-kinesis-agg) read the table already.
//
// The topic is Config.Topic, or per user record the JSON string field
// Config.TopicField (a path: a.b.c; a top-level key equal to the whole path
// wins) when it is present and a legal topic name
// (agent_kafka_topic_fallback_total counts the others, which go to Topic).
//
// # Partitioning
//
// Keyed records go where the Java client's default partitioner puts them:
// murmur2 of the key, made positive, modulo the partition count
// (kgo.StickyKeyPartitioner(nil)), so other producers' records of a key
// share its partition. Records without a key are sticky: they fill one
// partition's batch, then move on (KIP-480).
//
// # Delivery
//
// Acks all and the idempotent producer are the defaults: the broker drops
// the duplicates of the producer's own retries (a request timed out, a
// connection cut, a broker restarted after writing but before answering),
// and order per partition is kept with 5 requests in flight.
//
// Send hands every Kafka record of the batch to the producer, then waits for
// the broker's acknowledgements, at most Config.SendTimeout (and its ctx). A
// spool entry (an element of Batch.Records) is delivered only when every
// Kafka record made from it is acknowledged. The result is nil, the error
// itself when every entry failed, or an *outputs.PartialError listing the
// failed entries with a reason each, whose Err is permanent only when every
// failed entry was refused for good (a mix is retryable: the refused entries
// fail again on their own and are dead-lettered then). franz-go's own retries are bounded (10
// tries, SendTimeout per record, 4 metadata loads for a missing topic) for
// records it may fail safely, so the agent's sender owns retry and backoff.
//
// The Kafka records alias the batch (no copy): Send returns only once the
// producer is done with every one of them. At the deadline the producer
// fails the records it has not sent yet (their context is done); a record
// in a request whose outcome is unknown (a connection cut, a broker stopped
// or not answering) is resent by the idempotent producer with the same
// sequence numbers until the broker answers, and Send waits for that
// answer, past its deadline: then it is known whether the record was
// written, so the sender's retry never writes it a second time, and the
// backlog waits in the spool, not in the producer's memory. Such a wait
// lasts as long as the outage, 2 minutes at most (below the agent's
// watchdog): then the producer is replaced by a new one and the old one
// closed, which fails its records as retryable (those the broker had
// written are then written twice). The agent's shutdown ends the wait at
// once (the sender's context: the producer is replaced, the records stay in
// the spool), so a stop keeps its deadline. With idempotent: false the
// producer fails in-flight requests at the deadline (their records may be
// written twice), and Send copies the batch, since a request may still be
// written after its records were failed. Memory stays bounded by the
// batches in flight and Config.MaxBufferedBytes: while it is full, Send
// waits for room, then fails its records as retryable at its deadline.
//
// # Classification
//
//   - MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE: the broker judges whole
//     record batches, so every record of the refused batch is sent again
//     alone (through a second producer that buffers one record); one still
//     refused alone is permanent, like INVALID_RECORD, CORRUPT_MESSAGE and
//     INVALID_TOPIC_EXCEPTION. With format records, a user record of a KPL
//     aggregate refused alone is reported alone (*outputs.RejectedRecordsError):
//     the agent dead-letters that user record with the reason and the rest
//     of its aggregate counts as delivered. With format kpl (the aggregate
//     is the Kafka record) and for a plain record, the entry fails for good.
//   - A malformed aggregate (it cannot be deaggregated): permanent.
//   - UNKNOWN_TOPIC_OR_PARTITION: retryable (the topic may be created
//     later), logged at most once per 30s per topic.
//   - UNKNOWN_TOPIC_ID: retryable. franz-go answers it for a topic deleted
//     and created again (a new topic ID) until the topic is purged from the
//     client; the output purges it (at most once per 2s per topic) so the
//     retry produces to the new topic, and logs it once per 30s.
//   - Authorization and SASL failures: retryable (ACLs and secrets can be
//     fixed without a restart), logged at most once per 30s.
//   - Anything else (timeouts, broker down, leader moves, NOT_ENOUGH_REPLICAS):
//     retryable.
//
// # Compression
//
// lz4 (the default) is written as lz4 frames of 64 KiB independent blocks,
// as the Java client writes them (lz4Compressor); the other codecs are
// franz-go's.
//
// # Security
//
// TLS (system roots or ca_file, optional client certificate, server_name)
// and SASL PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM. AWS_MSK_IAM
// signs with credentials from the AWS SDK's default chain (environment,
// shared files and profiles, web identity, ECS and EC2 roles), refreshed
// before they expire; the region comes from the broker's host name. Secrets
// are never logged nor put in errors.
//
// # Metrics
//
// Labelled by topic (and output=<name>, added by the agent's registerer):
// agent_kafka_records_produced_total,
// agent_kafka_bytes_produced_total (key and value bytes, before compression),
// agent_kafka_produce_errors_total{code} (the Kafka error name, or timeout,
// canceled, client), agent_kafka_produce_latency_seconds (from Send to the
// acknowledgement), and agent_kafka_topic_fallback_total{reason}.
package kafka
