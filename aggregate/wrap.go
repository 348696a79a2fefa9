package aggregate

import (
	"crypto/md5"

	"google.golang.org/protobuf/encoding/protowire"
)

// AppendKinesisAggregate appends a's data as AppendKinesisData does, except
// that a plain record (Aggregated false) is wrapped in a KPL aggregated
// record of one user record (magic, an AggregatedRecord whose tables hold
// the record's partition key and explicit hash key, MD5). It is for a
// destination that has no place for the explicit hash key beside the data
// (Kinesis has: PutRecords' ExplicitHashKey; a Kafka record has not): any
// KPL deaggregator finds the key in the aggregate's table, as it does for
// the records of a larger aggregate. A plain record without an explicit
// hash key is appended as it is (its partition key goes beside the data).
func (a *Aggregate) AppendKinesisAggregate(dst []byte) []byte {
	if a.Aggregated || a.ExplicitHashKey == "" {
		return a.AppendKinesisData(dst)
	}
	dst = append(dst, magic[:]...)
	start := len(dst)
	dst = protowire.AppendTag(dst, 1, protowire.BytesType) // partition_key_table
	dst = protowire.AppendString(dst, a.PartitionKey)
	dst = protowire.AppendTag(dst, 2, protowire.BytesType) // explicit_hash_key_table
	dst = protowire.AppendString(dst, a.ExplicitHashKey)
	dst = append(dst, tagRecords)
	dst = protowire.AppendVarint(dst, uint64(recordSize(0, 0, true, len(a.Body))))
	dst = append(dst, tagPKIndex, 0, tagEHKIndex, 0, tagData)
	dst = protowire.AppendBytes(dst, a.Body)
	sum := md5.Sum(dst[start:])
	return append(dst, sum[:]...)
}

// KinesisAggregateSize is the length of what AppendKinesisAggregate
// appends.
func (a *Aggregate) KinesisAggregateSize() int {
	if a.Aggregated || a.ExplicitHashKey == "" {
		return a.Size() - len(a.PartitionKey)
	}
	inner := recordSize(0, 0, true, len(a.Body))
	return wireFraming + keyFieldSize(a.PartitionKey) + keyFieldSize(a.ExplicitHashKey) +
		1 + protowire.SizeVarint(uint64(inner)) + inner
}
