package http

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/encode"
)

// Send delivers b; see the package documentation for how results are
// classified. It is safe for concurrent use.
func (o *Output) Send(ctx context.Context, b outputs.Batch) error {
	if o.closed.Load() {
		return errClosed
	}
	if len(b.Records) == 0 {
		return nil
	}
	s, ok := o.senders.Get().(*sender)
	if !ok {
		s = &sender{o: o}
		s.prefix, s.sep, s.suffix = o.format.framing()
	}
	s.ctx, s.recs = ctx, b.Records
	buf := o.bufs.get()
	s.body = (*buf)[:0]
	switch o.format {
	case formatRaw:
		s.sendRaw()
	case formatRawPacked:
		s.sendPacked()
	default:
		s.sendRecords()
	}
	err := s.result()
	*buf = s.body
	o.bufs.put(buf)
	s.reset()
	o.senders.Put(s)
	return err
}

// userRef places one user record of the request being built: Kinesis
// record rec of the batch, user record idx inside it; idx is -1 when the
// unit of the request is the whole Kinesis record (raw-packed).
type userRef struct{ rec, idx int }

// Failure classes of a Kinesis record, ordered: retryable wins over permanent
// when a record fails both ways.
const (
	classOK uint8 = iota
	classPermanent
	classRetry
)

type failure struct {
	class uint8
	err   int // index into sender.errs
}

// rejection is a user record rejected on its own (see outputs.RejectedRecord).
type rejection struct {
	userRef
	err int // index into sender.errs
}

// sender is the state of one Send: the request being built and the fate of
// every Kinesis record. Reused through Output.senders.
type sender struct {
	o                   *Output
	ctx                 context.Context
	recs                []aggregate.Aggregate
	prefix, sep, suffix string

	body []byte    // request being built: prefix and records, without suffix
	n    int       // user records in body
	ends []int     // ends[j]: offset in body just after user record j
	refs []userRef // refs[j]: where user record j comes from
	sub  *[]byte   // pooled buffer for the body of part of a split request
	// whole and part: pooled buffers for a Kinesis record split after a
	// 413 (rawsplit.go): its data, and the body of one part.
	whole, part *[]byte
	// lo and hi delimit the user records (indexes into refs) of the
	// request on the wire: all of body, or part of it once split.
	lo, hi int
	splits int // splits of the request being sent
	// badSplits: splits of KPL aggregates after 400s in this Send
	// (rawsplit.go), bounded by maxBadRequestSplits.
	badSplits int

	fails      []failure // per Kinesis record; nil until the first failure
	nfail      int
	rejects    []rejection // user records rejected on their own
	errs       []error     // distinct errors of fails and rejects
	stop       error       // the retryable error that stopped sending
	stopErr    int         // its index in errs
	firstPerm  error
	firstRetry error

	// objects: the records being added are JSON objects made by the
	// processing stage (aggregate.Aggregate.JSONObjects).
	objects bool
}

func (s *sender) reset() {
	s.ctx, s.recs, s.body = nil, nil, nil
	s.n, s.ends, s.refs, s.objects = 0, s.ends[:0], s.refs[:0], false
	for _, p := range []**[]byte{&s.sub, &s.whole, &s.part} {
		if *p != nil {
			s.o.bufs.put(*p)
			*p = nil
		}
	}
	s.fails, s.nfail, s.rejects = nil, 0, s.rejects[:0]
	clear(s.errs)
	s.errs = s.errs[:0]
	s.stop, s.firstPerm, s.firstRetry = nil, nil, nil
	s.badSplits = 0
}

// errStop ends an aggregate.ForEach when sending stopped.
var errStop = errors.New("http: sending stopped")

func (s *sender) sendRecords() {
	for i := range s.recs {
		if s.stop != nil {
			s.fail(i, classRetry, s.stopErr)
			continue
		}
		err := s.addAggregate(i)
		switch {
		case err == nil:
		case errors.Is(err, errStop):
			s.fail(i, classRetry, s.stopErr) // its current record was never sent
		default:
			// ForEach validates an aggregate whole before the first record,
			// so none of a malformed one was added.
			e := s.addErr(outputs.Permanent(fmt.Errorf("http: decode record %d of the batch: %w", i, err)))
			s.fail(i, classPermanent, e)
		}
	}
	if s.stop == nil {
		_ = s.flush()
	}
}

// add appends a user record to the request, sending the request first when
// the record does not fit.
func (s *sender) add(ref userRef, pk, data []byte) error {
	if s.n >= s.o.cfg.MaxRequestRecords {
		if err := s.flush(); err != nil {
			return err
		}
	}
	mark := len(s.body)
	s.body = s.appendRecord(s.body, pk, data)
	if s.n > 0 && len(s.body)+len(s.suffix) > s.o.requestLimit() {
		s.body = s.body[:mark]
		if err := s.flush(); err != nil {
			return err
		}
		s.body = s.appendRecord(s.body, pk, data) // alone if it is oversized
	}
	s.n++
	s.ends = append(s.ends, len(s.body))
	s.refs = append(s.refs, ref)
	return nil
}

func (s *sender) appendRecord(dst, pk, data []byte) []byte {
	if s.n == 0 {
		dst = append(dst, s.prefix...)
	} else {
		dst = append(dst, s.sep...)
	}
	switch s.o.format {
	case formatJSON:
		if s.o.enc == encode.EncodingText {
			return encode.AppendJSONString(dst, data)
		}
		if s.objects {
			return encode.AppendMadeJSONObject(dst, data)
		}
		return encode.AppendJSONObject(dst, data)
	case formatKafkaRESTv2:
		return appendKafkaRecord(dst, pk, data)
	case formatKafkaRESTv3:
		return appendKafkaV3Record(dst, pk, data)
	}
	dst = encode.AppendRecordOf(dst, s.o.enc, data, s.objects)
	return append(dst, '\n')
}

// flush sends the request being built and settles its records. It returns
// errStop when the failure stops the Send.
func (s *sender) flush() error {
	if s.n == 0 {
		return nil
	}
	s.splits = 0
	s.send(0, s.n)
	s.body, s.n, s.ends, s.refs = s.body[:0], 0, s.ends[:0], s.refs[:0]
	if s.stop != nil {
		return errStop
	}
	return nil
}

// send posts user records [lo, hi) of the request being built and settles
// them. A request the server refuses as too large (413), or as bad (400)
// when it holds several user records, is split in halves that are sent at
// once, down to single user records: one bad or oversized record costs
// only itself (see the package documentation).
func (s *sender) send(lo, hi int) {
	body := s.requestBody(lo, hi)
	if hi-lo == 1 && s.o.format == formatRawPacked && len(body) > s.o.requestLimit() &&
		s.recs[s.refs[lo].rec].Count > 1 && s.splitAggregate(s.refs[lo].rec, nil, len(body)) {
		return // an aggregate larger than the server takes (413 before): sent in parts
	}
	var onOK func(*http.Response) error
	switch s.o.format {
	case formatKafkaRESTv2:
		onOK = s.readKafkaResponse
	case formatKafkaRESTv3:
		onOK = s.readKafkaV3Response
	}
	s.lo, s.hi = lo, hi
	err := s.o.roundTrip(s.ctx, body, nil, onOK)
	if hi-lo > 1 {
		if status, ok := splittable(err); ok {
			if limit := maxSplits(status); s.splits >= limit {
				// Many bad records (or a server refusing even small
				// bodies): finding each would cost two requests per
				// record. The rest of this range is rejected record by
				// record (dead-lettered, for replay), unsent.
				e := s.addErr(outputs.Permanent(fmt.Errorf("%w (not split further: %d splits of this request already)", err, s.splits)))
				for j := lo; j < hi; j++ {
					s.reject(j, e)
				}
				return
			}
			s.splits++
			s.o.split(status, len(body))
			mid := lo + (hi-lo)/2
			s.send(lo, mid)
			if s.stop != nil {
				s.settleRange(mid, hi, classRetry, s.stopErr)
				return
			}
			s.send(mid, hi)
			return
		}
	}
	if hi-lo == 1 && s.o.format == formatRawPacked && s.mayResplit(err) && s.splitAggregate(s.refs[lo].rec, err, len(body)) {
		return // an aggregate refused on its own (413, 400): sent in parts
	}
	s.settle(lo, hi, err)
}

// requestBody frames user records [lo, hi) as a request body.
func (s *sender) requestBody(lo, hi int) []byte {
	if lo == 0 && hi == s.n {
		// The suffix goes after the records; ends stay valid for a split.
		s.body = append(s.body[:s.ends[hi-1]], s.suffix...)
		return s.body
	}
	start := len(s.prefix)
	if lo > 0 {
		start = s.ends[lo-1] + len(s.sep)
	}
	if s.sub == nil {
		s.sub = s.o.bufs.get()
	}
	b := append((*s.sub)[:0], s.prefix...)
	b = append(b, s.body[start:s.ends[hi-1]]...)
	b = append(b, s.suffix...)
	*s.sub = b
	return b
}

// Splits of one request are bounded. Answered 400, a few bad records among
// many are found in about 2·log2(n) requests each, but a request of only bad
// records would take two requests per record. Answered 413, a request needs
// about twice as many requests as the server's limit goes into its size:
// 1024 covers a 5 MiB request to a server taking 5 KiB.
const (
	maxBadRequestSplits = 128
	maxTooLargeSplits   = 1024
)

func maxSplits(status int) int {
	if status == http.StatusRequestEntityTooLarge {
		return maxTooLargeSplits
	}
	return maxBadRequestSplits
}

// isSplittable reports whether err is a 413 or a 400 (see splittable).
func isSplittable(err error) bool {
	_, ok := splittable(err)
	return ok
}

// splittable reports whether err is a response that splitting the request
// may cure: 413 Content Too Large, 400 Bad Request.
func splittable(err error) (int, bool) {
	var se *StatusError
	if err == nil || !errors.As(err, &se) {
		return 0, false
	}
	switch se.StatusCode {
	case http.StatusRequestEntityTooLarge, http.StatusBadRequest:
		return se.StatusCode, true
	}
	return 0, false
}

func (s *sender) sendRaw() {
	for i := range s.recs {
		if s.stop != nil {
			s.fail(i, classRetry, s.stopErr)
			continue
		}
		a := &s.recs[i]
		s.body = a.AppendKinesisData(s.body[:0])
		s.refs = append(s.refs[:0], userRef{rec: i})
		s.splits = 0
		if a.Count > 1 && len(s.body) > s.o.requestLimit() && s.splitAggregate(i, nil, len(s.body)) {
			continue // larger than the server takes (413 before): sent in parts
		}
		// The whole Kinesis record is one request: a rejection is its own.
		err := s.o.roundTrip(s.ctx, s.body, a, nil)
		if s.mayResplit(err) && s.splitAggregate(i, err, len(s.body)) {
			continue // refused whole (413, 400): sent in parts
		}
		if outputs.IsPermanent(err) {
			s.fail(i, classPermanent, s.addErr(err))
			continue
		}
		s.settle(0, 1, err)
	}
	s.refs = s.refs[:0]
}

// settle records the outcome of the request holding user records [lo, hi).
func (s *sender) settle(lo, hi int, err error) {
	if err == nil {
		return
	}
	e := s.addErr(err)
	if !outputs.IsPermanent(err) {
		s.stop, s.stopErr = err, e
		s.settleRange(lo, hi, classRetry, e)
		return
	}
	if hi-lo == 1 {
		s.reject(lo, e) // rejected on its own
		return
	}
	s.settleRange(lo, hi, classPermanent, e)
}

// settleRange fails the Kinesis records of user records [lo, hi).
func (s *sender) settleRange(lo, hi int, class uint8, e int) {
	last := -1
	for _, r := range s.refs[lo:hi] {
		if r.rec != last {
			s.fail(r.rec, class, e)
			last = r.rec
		}
	}
}

// reject records user record j of the request as rejected for good on its
// own. A Kinesis record of one user record simply fails permanently; inside
// a larger aggregate only that user record is reported.
func (s *sender) reject(j int, e int) {
	r := s.refs[j]
	if r.idx < 0 || s.recs[r.rec].Count <= 1 {
		s.fail(r.rec, classPermanent, e)
		return
	}
	s.rejects = append(s.rejects, rejection{userRef: r, err: e})
}

// addErr keeps err for fail and returns its index.
func (s *sender) addErr(err error) int {
	s.errs = append(s.errs, err)
	return len(s.errs) - 1
}

// fail marks Kinesis record i failed with the error s.errs[e].
func (s *sender) fail(i int, class uint8, e int) {
	if s.fails == nil {
		s.fails = make([]failure, len(s.recs))
	}
	f := &s.fails[i]
	if f.class == classOK {
		s.nfail++
	}
	if class > f.class {
		f.class, f.err = class, e
	}
	err := s.errs[e]
	if class == classPermanent && s.firstPerm == nil {
		s.firstPerm = err
	}
	if class == classRetry && s.firstRetry == nil {
		s.firstRetry = err
	}
}

// result turns the failures into Send's error: the user records rejected on
// their own inside Kinesis records that are otherwise delivered, around the
// outcome of the rest.
func (s *sender) result() error {
	rest := s.failResult()
	var rejected []outputs.RejectedRecord
	for _, r := range s.rejects {
		if s.fails != nil && s.fails[r.rec].class != classOK {
			continue // its Kinesis record fails whole: retried or dead-lettered whole
		}
		rejected = append(rejected, outputs.RejectedRecord{Record: r.rec, UserRecord: r.idx, Reason: s.errs[r.err].Error()})
	}
	return outputs.WithRejected(rejected, rest)
}

// failResult classifies the failed Kinesis records.
func (s *sender) failResult() error {
	if s.nfail == 0 {
		return nil
	}
	failed := make([]int, 0, s.nfail)
	reasons := make([]string, 0, s.nfail)
	texts := make([]string, len(s.errs))
	allPermanent := true
	for i, f := range s.fails {
		if f.class == classOK {
			continue
		}
		if texts[f.err] == "" {
			texts[f.err] = s.errs[f.err].Error()
		}
		failed = append(failed, i)
		reasons = append(reasons, texts[f.err])
		if f.class == classRetry {
			allPermanent = false
		}
	}
	var err error
	switch {
	case allPermanent:
		err = s.firstPerm
		if !outputs.IsPermanent(err) {
			err = outputs.Permanent(err)
		}
	case s.stop != nil:
		err = s.stop
	default:
		err = s.firstRetry
	}
	if len(failed) == len(s.recs) {
		return err
	}
	return &outputs.PartialError{Failed: failed, Reasons: reasons, Err: err}
}
