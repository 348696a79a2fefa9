package aggregate

import (
	"crypto/md5"
)

// The framing of a KPL aggregated record on the wire (see doc.go).
const (
	magicLen    = 4
	digestLen   = md5.Size
	wireFraming = magicLen + digestLen // bytes the wire adds around the protobuf body
)

// AggregatedPartitionKey is the partition key of an aggregate of 2+ records,
// as the KPL sets it: Kinesis routes the aggregate by its explicit hash key,
// and the sub-records carry their own keys.
const AggregatedPartitionKey = "a"

// magic starts every KPL aggregated record.
var magic = [magicLen]byte{0xF3, 0x89, 0x9A, 0xC2}

// Aggregate is one Kinesis record produced by the Builder: either a KPL
// aggregated record of Count user records, or (Count == 1, Aggregated false) a
// single user record sent as it is, with its own keys.
//
// Body holds the protobuf AggregatedRecord message only (no magic, no MD5
// trailer) when Aggregated is true: the MD5 trailer is only needed on the wire
// to Kinesis and is added by AppendKinesisData at send time; the spool guards
// entries at rest with its own CRC32C.
type Aggregate struct {
	PartitionKey    string // "a" for an aggregate of 2+ records; the record's own key otherwise
	ExplicitHashKey string // decimal; "" when the record has none
	Aggregated      bool   // Body is the protobuf AggregatedRecord message only (no magic, no MD5)
	Body            []byte // when !Aggregated: the plain user record data
	Count           int    // user records

	// BuiltFor, when not nil, is the shard (of the shard map it was built
	// with) whose hash key range holds every user record of an aggregate a
	// Builder made: an output that routes the aggregate to a shard whose
	// range contains BuiltFor's need not read its records to know they all
	// lie in it (see ShardMap.Covers). It lives in memory only: the
	// encodings (AppendEntry, AppendKinesisData) do not carry it, and
	// ParseEntry leaves it nil.
	BuiltFor *Shard
}

// AppendKinesisData appends the record's data as sent to Kinesis: magic,
// Body and the MD5 of Body when Aggregated, Body as it is otherwise.
func (a *Aggregate) AppendKinesisData(dst []byte) []byte {
	if !a.Aggregated {
		return append(dst, a.Body...)
	}
	dst = append(dst, magic[:]...)
	start := len(dst)
	dst = append(dst, a.Body...)
	// The MD5 of the copy just written, still in the CPU's cache: the
	// body is read from memory once, not once to copy and once to hash.
	sum := md5.Sum(dst[start:])
	return append(dst, sum[:]...)
}

// Size returns what the record counts against Kinesis' record and request
// limits: the length of its partition key plus that of its data on the wire.
func (a *Aggregate) Size() int {
	n := len(a.PartitionKey) + len(a.Body)
	if a.Aggregated {
		n += wireFraming
	}
	return n
}

// IsAggregated reports whether Kinesis record data is a KPL aggregated record:
// whether it starts with the KPL magic number. Decode tells whether it is a
// valid one.
func IsAggregated(data []byte) bool { return hasMagic(data) }

// hasMagic reports whether data starts with the KPL magic number.
func hasMagic(data []byte) bool {
	return len(data) >= magicLen && [magicLen]byte(data[:magicLen]) == magic
}
