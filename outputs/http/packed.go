package http

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// The raw-packed body (FormatRawPacked) is a sequence of frames, one per
// Kinesis record, with nothing before, between or after them:
//
//	+----------+--------+---------+--------------+---------------+----------+
//	| data_len | pk_len | ehk_len | partition key| explicit hash | data     |
//	| u32 BE   | u16 BE | u8      | pk_len bytes | ehk_len bytes | data_len |
//	+----------+--------+---------+--------------+---------------+----------+
//
// The data is what format raw posts for that record (and Kinesis would
// store): a KPL aggregate with its magic and MD5 trailer, or a plain
// record's bytes. The partition key is the Kinesis record's ("a" for an
// aggregate of several user records, whose own keys are inside it); the
// explicit hash key is decimal ASCII, absent (ehk_len 0) when none.
const (
	packedHeaderLen = 4 + 2 + 1
	// PackedContentType is the Content-Type of a raw-packed body. It is
	// not raw's application/octet-stream, so a receiver of format raw,
	// which would take a packed body for one plain record, can refuse it.
	PackedContentType = "application/vnd.kplagent.raw-packed.v1"
)

// errPackedKey is a Kinesis record whose keys do not fit a frame header:
// not one the aggregator makes (Kinesis' limits are 256 characters and 39
// digits).
var errPackedKey = errors.New("partition key or explicit hash key too long for a raw-packed frame")

// appendPackedFrame appends a's frame to dst.
func appendPackedFrame(dst []byte, a *aggregate.Aggregate) ([]byte, error) {
	if len(a.PartitionKey) > math.MaxUint16 || len(a.ExplicitHashKey) > math.MaxUint8 {
		return dst, errPackedKey
	}
	start := len(dst)
	dst = append(dst, make([]byte, packedHeaderLen)...)
	dst = append(dst, a.PartitionKey...)
	dst = append(dst, a.ExplicitHashKey...)
	dataStart := len(dst)
	dst = a.AppendKinesisData(dst)
	n := len(dst) - dataStart
	if uint64(n) > math.MaxUint32 {
		return dst[:start], fmt.Errorf("record of %d bytes too large for a raw-packed frame", n)
	}
	h := dst[start : start+packedHeaderLen]
	binary.BigEndian.PutUint32(h, uint32(n))
	binary.BigEndian.PutUint16(h[4:], uint16(len(a.PartitionKey)))
	h[6] = uint8(len(a.ExplicitHashKey))
	return dst, nil
}

// PackedFrame is one frame of a raw-packed body.
type PackedFrame struct {
	PartitionKey    string
	ExplicitHashKey string // "" when none
	Data            []byte // aliases the body
}

// ParsePacked splits a raw-packed body into its frames. It is the reference
// reader of the layout above (for receivers written in Go, and for tests).
func ParsePacked(body []byte) ([]PackedFrame, error) {
	var out []PackedFrame
	for off := 0; off < len(body); {
		if len(body)-off < packedHeaderLen {
			return out, fmt.Errorf("http: raw-packed: %d bytes at offset %d: truncated frame header", len(body)-off, off)
		}
		h := body[off : off+packedHeaderLen]
		dlen := uint64(binary.BigEndian.Uint32(h))
		plen := uint64(binary.BigEndian.Uint16(h[4:]))
		elen := uint64(h[6])
		need := packedHeaderLen + plen + elen + dlen
		if uint64(len(body)-off) < need {
			return out, fmt.Errorf("http: raw-packed: frame at offset %d needs %d bytes, %d left", off, need, len(body)-off)
		}
		p := body[off+packedHeaderLen:]
		out = append(out, PackedFrame{
			PartitionKey:    string(p[:plen]),
			ExplicitHashKey: string(p[plen : plen+elen]),
			Data:            p[plen+elen : plen+elen+dlen : plen+elen+dlen],
		})
		off += int(need)
	}
	return out, nil
}

// sendPacked packs the Kinesis records of the batch into requests of at
// most the request size limit and MaxRequestRecords records. Each record
// is one unit of the request (userRef.idx -1): a refused request splits
// between records, and a record refused on its own fails whole.
func (s *sender) sendPacked() {
	for i := range s.recs {
		if s.stop != nil {
			s.fail(i, classRetry, s.stopErr)
			continue
		}
		switch err := s.addPacked(i); {
		case err == nil:
		case errors.Is(err, errStop):
			s.fail(i, classRetry, s.stopErr) // never sent
		default:
			e := s.addErr(outputs.Permanent(fmt.Errorf("http: record %d of the batch: %w", i, err)))
			s.fail(i, classPermanent, e)
		}
	}
	if s.stop == nil {
		_ = s.flush()
	}
}

// addPacked appends Kinesis record i to the request, sending the request
// first when the record does not fit.
func (s *sender) addPacked(i int) error {
	if s.n >= s.o.cfg.MaxRequestRecords {
		if err := s.flush(); err != nil {
			return err
		}
	}
	a := &s.recs[i]
	mark := len(s.body)
	body, err := appendPackedFrame(s.body, a)
	if err != nil {
		s.body = body[:mark]
		return err
	}
	s.body = body
	if s.n > 0 && len(s.body) > s.o.requestLimit() {
		s.body = s.body[:mark]
		if err := s.flush(); err != nil {
			return err
		}
		s.body, _ = appendPackedFrame(s.body, a) // alone if it is oversized
	}
	s.n++
	s.ends = append(s.ends, len(s.body))
	s.refs = append(s.refs, userRef{rec: i, idx: -1})
	return nil
}
