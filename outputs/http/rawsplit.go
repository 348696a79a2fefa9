package http

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// Formats raw and raw-packed send whole Kinesis records. One that holds a
// KPL aggregate of several user records and is refused on its own as too
// large (413) or as bad (400) is decoded and its user records sent again as
// smaller Kinesis records, built as the Builder (and the KPL) builds them:
// an aggregate of 2+ records (partition key "a", explicit hash key that of
// its first record) or a plain record with its own keys. Parts are halves,
// recursively, in order, down to single user records; only a user record
// refused on its own is rejected (an outputs.RejectedRecord with the
// server's answer, the rest of its aggregate counting as delivered). A part
// larger than the request size learned from earlier 413s
// (Output.requestLimit) is split before it is sent, so later aggregates
// cost no refused request.
//
// Splits are bounded: after 413s by the request's budget (maxTooLargeSplits
// per Kinesis record in raw, per request in raw-packed); after 400s by the
// Send's (maxBadRequestSplits in all), since a server that refuses every
// record would otherwise cost two requests per record of every aggregate.
// Once the Send's 400 budget is spent, the rest of the aggregate being
// split is rejected record by record unsent, and a later aggregate refused
// with 400 is rejected whole, as a plain record is.

// wholeSpan is a shard map of one shard owning every hash key: a Builder
// with it puts every record into one aggregate, whatever its keys.
var wholeSpan = func() *aggregate.ShardMap {
	m, err := aggregate.NewShardMap([]aggregate.Shard{{ID: "all", Start: aggregate.HashKey{}, End: aggregate.MaxHashKey}})
	if err != nil {
		panic(err)
	}
	return m
}()

// partBuilders holds Builders that make the parts of a split aggregate; a
// Builder costs a few hundred KiB (its key cache), and splits are rare.
var partBuilders = sync.Pool{New: func() any {
	b, err := aggregate.NewBuilder(aggregate.Config{
		MaxBytes:    aggregate.MaxLargeRecordSize,
		RecordLimit: aggregate.MaxLargeRecordSize,
		MaxRecords:  math.MaxInt32,
	}, wholeSpan)
	if err != nil {
		panic(err)
	}
	return b
}}

// mayResplit reports whether a Kinesis record (or part of one) of several
// user records refused with err is split: err is a 413, or a 400 while the
// Send has 400 splits left.
func (s *sender) mayResplit(err error) bool {
	status, ok := splittable(err)
	return ok && (status != http.StatusBadRequest || s.badSplits < maxBadRequestSplits)
}

// splitAggregate sends the user records of Kinesis record i again in
// smaller Kinesis records after its request (of size bytes) was refused
// with err, a 413 or 400; err nil: the record was not sent, being larger
// than the learned request size. It reports false, having done nothing,
// when record i cannot be split (a plain record, or data that does not
// decode).
func (s *sender) splitAggregate(i int, err error, size int) bool {
	a := &s.recs[i]
	if !a.Aggregated || a.Count < 2 {
		return false
	}
	if s.whole == nil {
		s.whole = s.o.bufs.get()
	}
	*s.whole = a.AppendKinesisData((*s.whole)[:0])
	// The records alias s.whole, untouched until this record is settled.
	recs, derr := aggregate.DecodeKinesisRecord(a.PartitionKey, a.ExplicitHashKey, *s.whole)
	if derr != nil || len(recs) < 2 {
		return false
	}
	s.splitParts(i, recs, 0, len(recs), err, size)
	return true
}

// splitParts sends user records [lo, hi) of Kinesis record i in two
// halves, after their Kinesis record of size bytes was refused with err (a
// 413 or 400), or unsent (err nil) for being larger than the learned limit.
func (s *sender) splitParts(i int, recs []aggregate.Record, lo, hi int, err error, size int) {
	if err != nil {
		status, _ := splittable(err)
		used, limit, of := &s.splits, maxTooLargeSplits, "this request"
		if status == http.StatusBadRequest {
			used, limit, of = &s.badSplits, maxBadRequestSplits, "this send after 400s"
		}
		if *used >= limit {
			// See send: the rest is rejected record by record, unsent.
			s.rejectParts(i, lo, hi, s.addErr(outputs.Permanent(fmt.Errorf("%w (not split further: %d splits of %s already)", err, *used, of))))
			return
		}
		*used++
		s.o.split(status, size)
	}
	mid := lo + (hi-lo)/2
	s.sendPart(i, recs, lo, mid)
	if s.stop != nil {
		return // record i failed retryable whole (sendPart)
	}
	s.sendPart(i, recs, mid, hi)
}

// sendPart sends user records [lo, hi) of Kinesis record i as one Kinesis
// record, in the output's format, and settles them.
func (s *sender) sendPart(i int, recs []aggregate.Record, lo, hi int) {
	if s.part == nil {
		s.part = s.o.bufs.get()
	}
	body, keys, err := s.buildPart((*s.part)[:0], recs[lo:hi])
	*s.part = body
	if err != nil {
		s.rejectParts(i, lo, hi, s.addErr(outputs.Permanent(fmt.Errorf("http: record %d of the batch: user records %d to %d: %w", i, lo, hi-1, err))))
		return
	}
	if hi-lo > 1 && len(body) > s.o.requestLimit() {
		s.splitParts(i, recs, lo, hi, nil, len(body))
		return
	}
	var hdr *aggregate.Aggregate
	if s.o.format == formatRaw {
		hdr = &keys
	}
	err = s.o.roundTrip(s.ctx, body, hdr, nil)
	switch {
	case err == nil:
	case hi-lo > 1 && isSplittable(err):
		s.splitParts(i, recs, lo, hi, err, len(body))
	case !outputs.IsPermanent(err):
		// Retried whole: the parts sent already are sent again
		// (at-least-once, as for a retryable failure of any aggregate).
		e := s.addErr(err)
		s.stop, s.stopErr = err, e
		s.fail(i, classRetry, e)
	default:
		s.rejectParts(i, lo, hi, s.addErr(err))
	}
}

// rejectParts rejects user records [lo, hi) of Kinesis record i one by one.
func (s *sender) rejectParts(i, lo, hi, e int) {
	for j := lo; j < hi; j++ {
		s.rejects = append(s.rejects, rejection{userRef: userRef{rec: i, idx: j}, err: e})
	}
}

// errPartSplit: a Builder made more than one Kinesis record of a part (it
// cannot, the part being smaller than the record it comes from).
var errPartSplit = errors.New("aggregate rebuilt as several records")

// buildPart appends to dst the body of one request holding recs as one
// Kinesis record (raw: its data; raw-packed: its frame) and returns it
// with the record's keys (Body empty).
func (s *sender) buildPart(dst []byte, recs []aggregate.Record) ([]byte, aggregate.Aggregate, error) {
	b := partBuilders.Get().(*aggregate.Builder)
	var keys aggregate.Aggregate
	made := 0
	emit := func(_ int, a *aggregate.Aggregate) error {
		made++
		if made > 1 {
			return errPartSplit
		}
		keys = aggregate.Aggregate{PartitionKey: a.PartitionKey, ExplicitHashKey: a.ExplicitHashKey, Aggregated: a.Aggregated, Count: a.Count}
		if s.o.format == formatRawPacked {
			var err error
			dst, err = appendPackedFrame(dst, a)
			return err
		}
		dst = a.AppendKinesisData(dst)
		return nil
	}
	var err error
	for _, r := range recs {
		if _, err = b.Add(aggregate.Record{Data: r.Data, PartitionKey: r.PartitionKey, ExplicitHashKey: r.ExplicitHashKey}, time.Time{}, emit); err != nil {
			break
		}
	}
	if err == nil {
		err = b.FlushAll(emit)
	}
	if err == nil && made != 1 {
		err = errPartSplit
	}
	if err == nil {
		partBuilders.Put(b) // empty again; one that failed may not be
	}
	return dst, keys, err
}
