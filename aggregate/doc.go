// Package aggregate packs user records into Kinesis Producer Library (KPL)
// aggregated records, byte-compatible with what the KPL produces, so that
// every consumer that deaggregates KPL records (KCL 1.x/2.x, the Lambda
// deaggregation libraries, Firehose) decodes them; and decodes them back.
//
// It is pure code: no I/O, no goroutines, no clock (callers pass the time).
//
// # Building
//
// A Builder groups user records by the shard Kinesis will route them to
// (hash key = explicit hash key, or MD5 of the partition key as a big-endian
// 128-bit integer, looked up in a ShardMap from ListShards), because the KCL
// drops a whole aggregate when one of its sub-records lies outside the hash
// range of the shard it was read from. Without a shard map, an aggregate holds
// the records of one partition key (or of one explicit hash key). An
// aggregate closes on size (Config.MaxBytes, default 51200 like the KPL), on
// count (Config.MaxRecords), or on age (FlushOlder, the caller's
// RecordMaxBufferedTime).
//
// After a reshard, aggregates built against the older map (in a spool, in
// flight) may straddle the new shards: ShardMap.Covers tells whether every
// sub-record of an aggregate lies in the shard it lands on, and Split
// re-aggregates one against the current map (the Kinesis output does both
// before sending).
//
// An aggregate of 2+ records is sent with partition key "a" and, as explicit
// hash key, the hash key of its first record in decimal (as the KPL does). An
// aggregate of one record is sent as that record, plain, with its own keys.
//
// # Kinesis record data of an aggregate
//
//	+---------+------------------------------------+----------------------+
//	| magic   | AggregatedRecord (protobuf, proto2)| MD5 of the protobuf  |
//	| 4 bytes | N bytes: Aggregate.Body            | 16 bytes             |
//	| F3899AC2|                                    |                      |
//	+---------+------------------------------------+----------------------+
//
// Data that does not start with the magic is a plain user record.
//
// # The protobuf messages (messages.proto of the KPL)
//
//	message AggregatedRecord {
//	  repeated string partition_key_table     = 1;
//	  repeated string explicit_hash_key_table = 2;
//	  repeated Record records                 = 3;
//	}
//	message Record {
//	  required uint64 partition_key_index     = 1;
//	  optional uint64 explicit_hash_key_index = 2;
//	  required bytes  data                    = 3;
//	  repeated Tag    tags                    = 4;
//	}
//	message Tag {
//	  required string key   = 1;
//	  optional string value = 2;
//	}
//
// As the KPL writes them, and as this package emits them (fields in number
// order; keys de-duplicated; no tags; the required fields always present,
// also when the index is 0 or the data is empty, since the Java parser
// rejects a message without them):
//
//	AggregatedRecord:
//	  0A <len> <partition key 0>        \  one per distinct partition key
//	  0A <len> <partition key 1> ...    /
//	  12 <len> <explicit hash key 0>    -  one per distinct explicit hash key
//	  1A <len> <Record 0>               \  one per user record, in order
//	  1A <len> <Record 1> ...           /
//	Record:
//	  08 <partition key index>          required varint
//	  10 <explicit hash key index>      only for a record with one
//	  1A <len> <data>                   required bytes
//
// <len> and indexes are protobuf base-128 varints. For example records
// ("pk1", "hello") and ("pk2", "world") encode to
//
//	0a03706b31 0a03706b32 1a09 0800 1a0568656c6c6f 1a09 0801 1a05776f726c64
//
// with MD5 87c22af1ed18e292eb55b018413a3cff.
//
// # Spool entry (Aggregate.AppendEntry, ParseEntry)
//
// The disk spool stores closed aggregates without magic and MD5 (it has its
// own CRC32C); the MD5 is computed at send time by AppendKinesisData.
//
//	+---------+-------+-------+--------+----+---------+-----+---------+------+
//	| version | flags | count | pk len | pk | ehk len | ehk | body len| body |
//	| 1 byte  | 1 byte| uvar  | uvar   |    | uvar    |     | uvar    |      |
//	+---------+-------+-------+--------+----+---------+-----+---------+------+
//
//	version  1, or 2 when a flag bit of version 2 is set
//	flags    bit 0: aggregated (body holds 2+ records, as an
//	         AggregatedRecord message unless bit 2); when clear the body is
//	         the plain record's data
//	         bit 1 (version 2): every record is a JSON object made by the
//	         processing stage (Aggregate.JSONObjects)
//	         bit 2 (version 2): the aggregated body is in the newline
//	         framing (each record followed by "\n", all with pk and ehk)
//	         other bits zero
//	count    user records in the body (1 when plain)
//	pk, ehk  the Kinesis record's partition key and explicit hash key
//	         (ehk len 0: none); in the newline framing, the records' keys
//	body     ends the entry exactly
//
// uvar is an unsigned LEB128 varint (encoding/binary's Uvarint). Entries that
// need no version 2 flag are written as version 1, readable by older agents.
//
// # The newline framing (Config.Framing, docs/design/006)
//
// For outputs that write user records one by one, a Builder may build an
// aggregate as its records, each followed by "\n", as long as they share
// their keys and hold no "\n"; it is turned into KPL otherwise, and
// Aggregate.KPL, AppendKinesisData and Size give the KPL record it stands for.
package aggregate
