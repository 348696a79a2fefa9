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

// Framing is how an aggregated Body holds its user records.
type Framing uint8

const (
	// FramingKPL: Body is a protobuf AggregatedRecord message (no magic, no
	// MD5 trailer), each record with its own keys.
	FramingKPL Framing = iota
	// FramingLines: Body is the user records, each followed by "\n" (no
	// record contains one), and every record has the Aggregate's
	// PartitionKey and ExplicitHashKey. A Builder configured for it
	// (Config.Framing) makes it for outputs that write user records one by
	// one: cheaper to build and to read than protobuf, and for ndjson the
	// request body as it is. AppendKinesisData, Size and KPL turn it into
	// the KPL record the Builder would have made. See docs/design/006.
	FramingLines
)

// Aggregate is one Kinesis record produced by the Builder: either an
// aggregate of Count user records (Aggregated true, see Framing), or
// (Count == 1, Aggregated false) a single user record sent as it is, with
// its own keys.
//
// In FramingKPL, Body holds the protobuf AggregatedRecord message only (no
// magic, no MD5 trailer) when Aggregated is true: the MD5 trailer is only
// needed on the wire to Kinesis and is added by AppendKinesisData at send
// time; the spool guards entries at rest with its own CRC32C.
type Aggregate struct {
	PartitionKey    string  // "a" for a KPL aggregate of 2+ records; the records' own key otherwise
	ExplicitHashKey string  // decimal; "" when the record has none
	Aggregated      bool    // Body holds 2+ records, framed per Framing
	Framing         Framing // of an aggregated Body
	// JSONObjects tells that every user record is one valid JSON object
	// without white space around it, as the processing stage made it
	// (Record.JSONObject): an output writing JSON may use the records as
	// they are without checking them again. False when unknown.
	JSONObjects bool
	Body        []byte // when !Aggregated: the plain user record data
	Count       int    // user records

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
// the AggregatedRecord message and its MD5 when Aggregated (a FramingLines
// Body is encoded as one first), Body as it is otherwise.
func (a *Aggregate) AppendKinesisData(dst []byte) []byte {
	if !a.Aggregated {
		return append(dst, a.Body...)
	}
	dst = append(dst, magic[:]...)
	start := len(dst)
	// The MD5 of the copy just written, still in the CPU's cache: the
	// body is read from memory once, not once to copy and once to hash.
	if a.Framing == FramingLines {
		dst = appendLinesAsKPL(dst, a.PartitionKey, a.ExplicitHashKey, a.Body)
	} else {
		dst = append(dst, a.Body...)
	}
	sum := md5.Sum(dst[start:])
	return append(dst, sum[:]...)
}

// Size returns what the record counts against Kinesis' record and request
// limits: the length of its partition key plus that of its data on the wire.
func (a *Aggregate) Size() int {
	if a.Aggregated && a.Framing == FramingLines {
		return len(a.PartitionKey) + wireFraming + linesKPLSize(a.PartitionKey, a.ExplicitHashKey, a.Body)
	}
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
