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
	if o.format == formatRaw {
		s.sendRaw()
	} else {
		s.sendRecords()
	}
	err := s.result()
	*buf = s.body
	o.bufs.put(buf)
	s.reset()
	o.senders.Put(s)
	return err
}

// run is a stretch of consecutive user records of one Kinesis record in the
// request being built.
type run struct{ rec, n int }

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

// sender is the state of one Send: the request being built and the fate of
// every Kinesis record. Reused through Output.senders.
type sender struct {
	o                   *Output
	ctx                 context.Context
	recs                []aggregate.Aggregate
	prefix, sep, suffix string

	body []byte // request being built
	n    int    // user records in body
	runs []run  // Kinesis records with user records in body, in order

	fails      []failure // per Kinesis record; nil until the first failure
	nfail      int
	errs       []error // distinct errors of fails
	stop       error   // the retryable error that stopped sending
	stopErr    int     // its index in errs
	firstPerm  error
	firstRetry error
}

func (s *sender) reset() {
	s.ctx, s.recs, s.body = nil, nil, nil
	s.n, s.runs = 0, s.runs[:0]
	s.fails, s.nfail = nil, 0
	clear(s.errs)
	s.errs = s.errs[:0]
	s.stop, s.firstPerm, s.firstRetry = nil, nil, nil
}

// errStop ends an aggregate.ForEach when sending stopped.
var errStop = errors.New("http: sending stopped")

func (s *sender) sendRecords() {
	for i := range s.recs {
		if s.stop != nil {
			s.fail(i, classRetry, s.stopErr)
			continue
		}
		err := aggregate.ForEach(&s.recs[i], func(pk, _, data []byte) error {
			return s.add(i, pk, data)
		})
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

// add appends one user record of Kinesis record rec to the request, sending
// the request first when the record does not fit.
func (s *sender) add(rec int, pk, data []byte) error {
	if s.n >= s.o.cfg.MaxRequestRecords {
		if err := s.flush(); err != nil {
			return err
		}
	}
	mark := len(s.body)
	s.body = s.appendRecord(s.body, pk, data)
	if s.n > 0 && len(s.body)+len(s.suffix) > int(s.o.cfg.MaxRequestBytes) {
		s.body = s.body[:mark]
		if err := s.flush(); err != nil {
			return err
		}
		s.body = s.appendRecord(s.body, pk, data) // alone if it is oversized
	}
	s.n++
	if k := len(s.runs) - 1; k >= 0 && s.runs[k].rec == rec {
		s.runs[k].n++
	} else {
		s.runs = append(s.runs, run{rec: rec, n: 1})
	}
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
		return encode.AppendJSONString(dst, data)
	case formatKafkaRESTv2:
		return appendKafkaRecord(dst, pk, data)
	case formatKafkaRESTv3:
		return appendKafkaV3Record(dst, pk, data)
	}
	dst = append(dst, data...)
	return append(dst, '\n')
}

// flush sends the request being built and settles its records. It returns
// errStop when the failure stops the Send.
func (s *sender) flush() error {
	if s.n == 0 {
		return nil
	}
	s.body = append(s.body, s.suffix...)
	var onOK func(*http.Response) error
	switch s.o.format {
	case formatKafkaRESTv2:
		onOK = s.readKafkaResponse
	case formatKafkaRESTv3:
		onOK = s.readKafkaV3Response
	}
	err := s.o.roundTrip(s.ctx, s.body, nil, onOK)
	s.settle(err)
	s.body, s.n, s.runs = s.body[:0], 0, s.runs[:0]
	if s.stop != nil {
		return errStop
	}
	return nil
}

func (s *sender) sendRaw() {
	for i := range s.recs {
		if s.stop != nil {
			s.fail(i, classRetry, s.stopErr)
			continue
		}
		a := &s.recs[i]
		s.body = a.AppendKinesisData(s.body[:0])
		s.runs = append(s.runs[:0], run{rec: i, n: a.Count})
		s.settle(s.o.roundTrip(s.ctx, s.body, a, nil))
	}
	s.runs = s.runs[:0]
}

// settle records the outcome of the request holding s.runs.
func (s *sender) settle(err error) {
	if err == nil {
		return
	}
	e := s.addErr(err)
	class := classRetry
	if outputs.IsPermanent(err) {
		class = classPermanent
	} else {
		s.stop, s.stopErr = err, e
	}
	for _, r := range s.runs {
		s.fail(r.rec, class, e)
	}
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

// result turns the failures into Send's error.
func (s *sender) result() error {
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
