package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Spool entry layout (see doc.go). Version 1 entries are written as before
// (KPL or plain, no new flags), so that an older agent reads them; version 2
// adds flag bits (newline framing, JSON objects). Both are read.
const (
	entryVersion1        = 1
	entryVersion2        = 2
	entryFlagAggregated  = 1 << 0
	entryFlagJSONObjects = 1 << 1 // version 2
	entryFlagLines       = 1 << 2 // version 2: the body is in FramingLines
	entryKnownFlagsV1    = entryFlagAggregated
	entryKnownFlagsV2    = entryFlagAggregated | entryFlagJSONObjects | entryFlagLines
	// minRecordField is the smallest encoded Record as field 3 of an
	// AggregatedRecord: tag, length, partition key index, empty data.
	minRecordField = 6
)

// ErrEntry is wrapped by ParseEntry's errors.
var ErrEntry = errors.New("aggregate: malformed spool entry")

// AppendEntry appends a's compact self-describing encoding, for the disk
// spool, to dst. ParseEntry is its inverse.
func (a *Aggregate) AppendEntry(dst []byte) []byte {
	return append(a.AppendEntryHead(dst), a.Body...)
}

// AppendEntryHead appends what AppendEntry does except the Body's bytes:
// the entry is the result followed by a.Body. A spool append takes the two
// parts, so the body is copied once, into the spool.
func (a *Aggregate) AppendEntryHead(dst []byte) []byte {
	flags, version := byte(0), byte(entryVersion1)
	if a.Aggregated {
		flags |= entryFlagAggregated
		if a.Framing == FramingLines {
			flags |= entryFlagLines
			version = entryVersion2
		}
	}
	if a.JSONObjects {
		flags |= entryFlagJSONObjects
		version = entryVersion2
	}
	dst = append(dst, version, flags)
	dst = binary.AppendUvarint(dst, uint64(a.Count))
	dst = binary.AppendUvarint(dst, uint64(len(a.PartitionKey)))
	dst = append(dst, a.PartitionKey...)
	dst = binary.AppendUvarint(dst, uint64(len(a.ExplicitHashKey)))
	dst = append(dst, a.ExplicitHashKey...)
	return binary.AppendUvarint(dst, uint64(len(a.Body)))
}

// ParseEntry decodes an entry made by AppendEntry. Body aliases b; the keys
// are copied. It checks the layout and the keys (a partition key and explicit
// hash key Kinesis accepts, a count that fits the body), not the records
// of the Body themselves (ForEach does). Errors wrap ErrEntry; ParseEntry never panics.
func ParseEntry(b []byte) (Aggregate, error) {
	var a Aggregate
	if len(b) < 2 {
		return a, fmt.Errorf("%w: %d bytes, too short", ErrEntry, len(b))
	}
	known := byte(entryKnownFlagsV1)
	switch b[0] {
	case entryVersion1:
	case entryVersion2:
		known = entryKnownFlagsV2
	default:
		return a, fmt.Errorf("%w: unknown version %d", ErrEntry, b[0])
	}
	flags := b[1]
	if flags&^known != 0 {
		return a, fmt.Errorf("%w: unknown flags %#x", ErrEntry, flags)
	}
	a.Aggregated = flags&entryFlagAggregated != 0
	a.JSONObjects = flags&entryFlagJSONObjects != 0
	if flags&entryFlagLines != 0 {
		if !a.Aggregated {
			return a, fmt.Errorf("%w: newline framing on a plain record", ErrEntry)
		}
		a.Framing = FramingLines
	}
	rest := b[2:]

	count, n := binary.Uvarint(rest)
	if n <= 0 {
		return a, fmt.Errorf("%w: bad record count", ErrEntry)
	}
	rest = rest[n:]
	pk, rest, ok := entryField(rest)
	if !ok {
		return a, fmt.Errorf("%w: truncated partition key", ErrEntry)
	}
	ehk, rest, ok := entryField(rest)
	if !ok {
		return a, fmt.Errorf("%w: truncated explicit hash key", ErrEntry)
	}
	body, rest, ok := entryField(rest)
	if !ok {
		return a, fmt.Errorf("%w: truncated body", ErrEntry)
	}
	if len(rest) != 0 {
		return a, fmt.Errorf("%w: %d bytes after the body", ErrEntry, len(rest))
	}

	switch {
	case count == 0:
		return a, fmt.Errorf("%w: no records", ErrEntry)
	case !a.Aggregated && count != 1:
		return a, fmt.Errorf("%w: plain record with count %d", ErrEntry, count)
	case a.Framing == FramingLines && count > uint64(len(body)):
		return a, fmt.Errorf("%w: %d records cannot fit %d bytes", ErrEntry, count, len(body))
	case a.Aggregated && a.Framing == FramingKPL && count > uint64(len(body)/minRecordField):
		return a, fmt.Errorf("%w: %d records cannot fit %d bytes", ErrEntry, count, len(body))
	}
	if string(pk) == AggregatedPartitionKey {
		a.PartitionKey = AggregatedPartitionKey // no allocation in the usual case
	} else {
		a.PartitionKey = string(pk)
	}
	if err := ValidatePartitionKey(a.PartitionKey); err != nil {
		return Aggregate{}, fmt.Errorf("%w: %w", ErrEntry, err)
	}
	if len(ehk) > 0 {
		if _, err := ParseHashKey(string(ehk)); err != nil {
			return Aggregate{}, fmt.Errorf("%w: %w", ErrEntry, err)
		}
	}
	a.ExplicitHashKey = string(ehk)
	a.Body = body
	a.Count = int(count)
	return a, nil
}

// entryField splits a length-prefixed field off b.
func entryField(b []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	end := k + int(n)
	return b[k:end:end], b[end:], true
}
