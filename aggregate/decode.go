package aggregate

import (
	"crypto/md5"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed is wrapped by every error about a record that starts with the
// KPL magic but is not a valid aggregated record: MD5 mismatch, truncated or
// malformed protobuf, missing required fields, a key index outside its table.
var ErrMalformed = errors.New("aggregate: malformed aggregated record")

// Decode returns the user records of a Kinesis record's data. Aggregated
// data (it starts with the KPL magic) is verified against its MD5 trailer and
// decoded; any other data is passed through as one Record with empty keys (see
// DecodeKinesisRecord to keep the Kinesis record's own). Data slices alias
// kinesisData. Errors wrap ErrMalformed; Decode never panics.
//
// An aggregate with no records decodes to no records (the KCL does the same).
func Decode(kinesisData []byte) ([]Record, error) {
	return DecodeKinesisRecord("", "", kinesisData)
}

// DecodeKinesisRecord is Decode for a Kinesis record whose keys are known: a
// plain (non-aggregated) record keeps them.
func DecodeKinesisRecord(pk, ehk string, data []byte) ([]Record, error) {
	if !hasMagic(data) {
		return []Record{{Data: data, PartitionKey: pk, ExplicitHashKey: ehk}}, nil
	}
	if len(data) < wireFraming {
		return nil, fmt.Errorf("%w: %d bytes, shorter than magic and MD5", ErrMalformed, len(data))
	}
	body := data[magicLen : len(data)-digestLen]
	if sum := md5.Sum(body); [digestLen]byte(data[len(data)-digestLen:]) != sum {
		return nil, fmt.Errorf("%w: MD5 mismatch", ErrMalformed)
	}
	return decodeBody(body)
}

// decodeBody decodes an AggregatedRecord message.
func decodeBody(body []byte) ([]Record, error) {
	t := getTables()
	defer putTables(t)
	n, err := t.parse(body)
	if err != nil {
		return nil, err
	}
	pks := make([]string, len(t.pk))
	for i, s := range t.pk {
		pks[i] = string(body[s.off:s.end])
	}
	ehks := make([]string, len(t.ehk))
	for i, s := range t.ehk {
		ehks[i] = string(body[s.off:s.end])
	}
	recs := make([]Record, 0, n)
	err = t.each(body, func(r rawRecord) error {
		rec := Record{Data: r.data, PartitionKey: pks[r.pkIdx]}
		if r.hasEHK {
			rec.ExplicitHashKey = ehks[r.ehkIdx]
		}
		if r.tags {
			rec.Tags = decodeTags(r.msg)
		}
		recs = append(recs, rec)
		return nil
	})
	return recs, err
}

// span is a slice of a message: body[off:end].
type span struct{ off, end int }

// tables holds the key tables of an AggregatedRecord being decoded. Pooled, so
// that decoding does not allocate.
type tables struct {
	pk, ehk []span
}

var tablesPool = sync.Pool{New: func() any { return new(tables) }}

func getTables() *tables { return tablesPool.Get().(*tables) }

func putTables(t *tables) {
	const keep = 1 << 16 // entries; larger tables are left to the GC
	if cap(t.pk) > keep || cap(t.ehk) > keep {
		return
	}
	t.pk, t.ehk = t.pk[:0], t.ehk[:0]
	tablesPool.Put(t)
}

// rawRecord is one decoded Record message.
type rawRecord struct {
	pkIdx, ehkIdx uint64
	hasEHK        bool
	data          []byte
	tags          bool   // it has tags
	msg           []byte // the whole message
}

// parse walks body once, collecting the key tables and validating every
// record, so that a malformed aggregate is refused before any record is
// used. It returns the number of records.
func (t *tables) parse(body []byte) (int, error) {
	t.pk, t.ehk = t.pk[:0], t.ehk[:0]
	records := 0
	var r rawRecord
	var maxPK, maxEHK uint64 // highest index used (when usedPK, usedEHK)
	var maxPKRec, maxEHKRec int
	usedPK, usedEHK := false, false
	for off := 0; off < len(body); {
		num, typ, n := protowire.ConsumeTag(body[off:])
		if n < 0 {
			return 0, fmt.Errorf("%w: at byte %d: %v", ErrMalformed, off, protowire.ParseError(n))
		}
		off += n
		if typ == protowire.BytesType && num >= 1 && num <= 3 {
			v, n := protowire.ConsumeBytes(body[off:])
			if n < 0 {
				return 0, fmt.Errorf("%w: field %d at byte %d: %v", ErrMalformed, num, off, protowire.ParseError(n))
			}
			start := off + n - len(v)
			switch num {
			case 1:
				t.pk = append(t.pk, span{start, off + n})
			case 2:
				t.ehk = append(t.ehk, span{start, off + n})
			default:
				// Validate the record in this same walk; its key indexes
				// are checked once the tables are complete (they may come
				// in any order).
				if err := parseRecord(v, &r); err != nil {
					return 0, fmt.Errorf("%w: record %d: %v", ErrMalformed, records, err)
				}
				if !usedPK || r.pkIdx > maxPK {
					maxPK, maxPKRec, usedPK = r.pkIdx, records, true
				}
				if r.hasEHK && (!usedEHK || r.ehkIdx > maxEHK) {
					maxEHK, maxEHKRec, usedEHK = r.ehkIdx, records, true
				}
				records++
			}
			off += n
			continue
		}
		// An unknown field, or a known one of another wire type (which
		// protobuf parsers keep as unknown): skip it.
		n = protowire.ConsumeFieldValue(num, typ, body[off:])
		if n < 0 {
			return 0, fmt.Errorf("%w: field %d at byte %d: %v", ErrMalformed, num, off, protowire.ParseError(n))
		}
		off += n
	}
	if usedPK && maxPK >= uint64(len(t.pk)) {
		return 0, fmt.Errorf("%w: record %d: partition key index %d outside the table of %d keys", ErrMalformed, maxPKRec, maxPK, len(t.pk))
	}
	if usedEHK && maxEHK >= uint64(len(t.ehk)) {
		return 0, fmt.Errorf("%w: record %d: explicit hash key index %d outside the table of %d keys", ErrMalformed, maxEHKRec, maxEHK, len(t.ehk))
	}
	return records, nil
}

// each parses every record of body (already walked by parse), checks its key
// indexes against the tables and passes it to fn, if not nil.
func (t *tables) each(body []byte, fn func(rawRecord) error) error {
	var r rawRecord
	i := 0
	for off := 0; off < len(body); {
		num, typ, n := protowire.ConsumeTag(body[off:])
		off += n
		if num != 3 || typ != protowire.BytesType {
			off += protowire.ConsumeFieldValue(num, typ, body[off:])
			continue
		}
		v, n := protowire.ConsumeBytes(body[off:])
		off += n
		if err := parseRecord(v, &r); err != nil {
			return fmt.Errorf("%w: record %d: %v", ErrMalformed, i, err)
		}
		if r.pkIdx >= uint64(len(t.pk)) {
			return fmt.Errorf("%w: record %d: partition key index %d outside the table of %d keys", ErrMalformed, i, r.pkIdx, len(t.pk))
		}
		if r.hasEHK && r.ehkIdx >= uint64(len(t.ehk)) {
			return fmt.Errorf("%w: record %d: explicit hash key index %d outside the table of %d keys", ErrMalformed, i, r.ehkIdx, len(t.ehk))
		}
		if fn != nil {
			if err := fn(r); err != nil {
				return err
			}
		}
		i++
	}
	return nil
}

// parseRecord decodes a Record message into r.
func parseRecord(b []byte, r *rawRecord) error {
	*r = rawRecord{msg: b}
	hasPK, hasData := false, false
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		off += n
		switch {
		case num == 1 && typ == protowire.VarintType:
			r.pkIdx, n = protowire.ConsumeVarint(b[off:])
			hasPK = true
		case num == 2 && typ == protowire.VarintType:
			r.ehkIdx, n = protowire.ConsumeVarint(b[off:])
			r.hasEHK = true
		case num == 3 && typ == protowire.BytesType:
			r.data, n = protowire.ConsumeBytes(b[off:])
			r.data = r.data[:len(r.data):len(r.data)] // appending must not clobber what follows
			hasData = true
		case num == 4 && typ == protowire.BytesType:
			var tag []byte
			tag, n = protowire.ConsumeBytes(b[off:])
			if n >= 0 {
				if err := parseTag(tag, nil); err != nil {
					return fmt.Errorf("tag: %w", err)
				}
				r.tags = true
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b[off:])
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		off += n
	}
	switch {
	case !hasPK:
		return errors.New("required field partition_key_index missing")
	case !hasData:
		return errors.New("required field data missing")
	}
	if r.data == nil {
		r.data = b[len(b):] // empty, not nil: an empty record is still a record
	}
	return nil
}

// parseTag decodes a Tag message into t, if not nil.
func parseTag(b []byte, t *Tag) error {
	hasKey := false
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		off += n
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			var v []byte
			if v, n = protowire.ConsumeBytes(b[off:]); n >= 0 && t != nil {
				if num == 1 {
					t.Key = string(v)
				} else {
					t.Value = string(v)
				}
			}
			hasKey = hasKey || num == 1
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b[off:])
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		off += n
	}
	if !hasKey {
		return errors.New("required field key missing")
	}
	return nil
}

// decodeTags returns the tags of a Record message that parseRecord accepted.
func decodeTags(b []byte) []Tag {
	var tags []Tag
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		off += n
		if num == 4 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b[off:])
			var t Tag
			_ = parseTag(v, &t) // validated by parseRecord
			tags = append(tags, t)
			off += n
			continue
		}
		off += protowire.ConsumeFieldValue(num, typ, b[off:])
	}
	return tags
}
