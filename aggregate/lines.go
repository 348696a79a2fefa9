package aggregate

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The newline framing (FramingLines): records, each followed by "\n", all
// with the aggregate's keys. See docs/design/006.

// KPL returns a as the KPL record the Builder would have made of the same
// records in FramingKPL: partition key "a", as explicit hash key the hash key
// of the records in decimal, and a protobuf Body (newly allocated). Other
// aggregates are returned as they are. For outputs that send KPL records.
func (a *Aggregate) KPL() Aggregate {
	if !a.Aggregated || a.Framing != FramingLines {
		return *a
	}
	var h HashKey
	if a.ExplicitHashKey != "" {
		var err error
		if h, err = ParseHashKey(a.ExplicitHashKey); err != nil {
			h = PartitionKeyHash(a.PartitionKey) // ParseEntry refuses such keys
		}
	} else {
		h = PartitionKeyHash(a.PartitionKey)
	}
	body := make([]byte, 0, linesKPLSize(a.PartitionKey, a.ExplicitHashKey, a.Body))
	return Aggregate{
		PartitionKey:    AggregatedPartitionKey,
		ExplicitHashKey: h.String(),
		Aggregated:      true,
		Framing:         FramingKPL,
		JSONObjects:     a.JSONObjects,
		Body:            appendLinesAsKPL(body, a.PartitionKey, a.ExplicitHashKey, a.Body),
		Count:           a.Count,
		BuiltFor:        a.BuiltFor, // the same records: the same shard holds them
	}
}

// appendLinesAsKPL appends the AggregatedRecord message of the records of a
// FramingLines body, all with keys pk and ehk.
func appendLinesAsKPL(dst []byte, pk, ehk string, body []byte) []byte {
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, pk)
	hasEHK := ehk != ""
	if hasEHK {
		dst = protowire.AppendTag(dst, 2, protowire.BytesType)
		dst = protowire.AppendString(dst, ehk)
	}
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			i = len(body) // not a valid body: keep the bytes rather than lose them
		}
		data := body[:i]
		dst = append(dst, tagRecords)
		dst = protowire.AppendVarint(dst, uint64(recordSize(0, 0, hasEHK, len(data))))
		dst = append(dst, tagPKIndex, 0)
		if hasEHK {
			dst = append(dst, tagEHKIndex, 0)
		}
		dst = append(dst, tagData)
		dst = protowire.AppendBytes(dst, data)
		body = body[min(i+1, len(body)):]
	}
	return dst
}

// linesKPLSize is the size of appendLinesAsKPL's message.
func linesKPLSize(pk, ehk string, body []byte) int {
	n := keyFieldSize(pk)
	hasEHK := ehk != ""
	if hasEHK {
		n += keyFieldSize(ehk)
	}
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			i = len(body)
		}
		inner := recordSize(0, 0, hasEHK, i)
		n += 1 + protowire.SizeVarint(uint64(inner)) + inner
		body = body[min(i+1, len(body)):]
	}
	return n
}

// checkLines validates a FramingLines body of count records (0: any).
func checkLines(body []byte, count int) error {
	if len(body) == 0 || body[len(body)-1] != '\n' {
		return fmt.Errorf("%w: lines body does not end with a line break", ErrMalformed)
	}
	if n := bytes.Count(body, newline); count > 0 && n != count {
		return fmt.Errorf("%w: %d records, the aggregate says %d", ErrMalformed, n, count)
	}
	return nil
}

var newline = []byte{'\n'}

// forEachLine is ForEach for a FramingLines aggregate.
func forEachLine(a *Aggregate, fn func(partitionKey, explicitHashKey, data []byte) error) error {
	if err := checkLines(a.Body, a.Count); err != nil {
		return err
	}
	pk, ehk := readOnlyBytes(a.PartitionKey), readOnlyBytes(a.ExplicitHashKey)
	if len(ehk) == 0 {
		ehk = nil
	}
	for body := a.Body; len(body) > 0; {
		i := bytes.IndexByte(body, '\n')
		if err := fn(pk, ehk, body[:i:i]); err != nil {
			return err
		}
		body = body[i+1:]
	}
	return nil
}
