package aggregate

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
	Aggregated      bool
	Body            []byte
	Count           int
}
