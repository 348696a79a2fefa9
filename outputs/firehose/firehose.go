package firehose

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/firehose"
	"github.com/aws/aws-sdk-go-v2/service/firehose/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/awsconf"
	"github.com/kplagent/agent/outputs"
)

// Settings are the values set in code (not from YAML).
type Settings struct {
	Logger     *slog.Logger // already scoped to this output by the caller; nil: discard
	UserAgent  string       // added to the SDK's User-Agent
	Registerer prometheus.Registerer
	MaxConns   int // idle connections kept: the sender's in-flight Sends. Default 64.
	// OutputLabelled says Registerer adds the label output=<name> itself
	// (the agent's does): the metrics then carry only the stream label.
	OutputLabelled bool
}

// api is the part of the Firehose client the output uses.
type api interface {
	PutRecordBatch(ctx context.Context, in *firehose.PutRecordBatchInput, opts ...func(*firehose.Options)) (*firehose.PutRecordBatchOutput, error)
	DescribeDeliveryStream(ctx context.Context, in *firehose.DescribeDeliveryStreamInput, opts ...func(*firehose.Options)) (*firehose.DescribeDeliveryStreamOutput, error)
}

// Output is the Firehose output. Send is safe for concurrent use.
type Output struct {
	name    string
	cfg     Config
	client  api
	tr      *http.Transport
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	closed   atomic.Bool
	lastWarn atomic.Int64
}

var (
	_ outputs.Output        = (*Output)(nil)
	_ outputs.Healthchecker = (*Output)(nil)
)

// New validates cfg, resolves the AWS configuration and returns the output.
// It calls no Firehose API.
func New(name string, cfg Config, set Settings) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("firehose: %w", err)
	}
	cfg = cfg.withDefaults()
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxConns := set.MaxConns
	if maxConns <= 0 {
		maxConns = 64
	}
	awsCfg, tr, err := awsconf.Load(cfg.Config, awsconf.Settings{UserAgent: set.UserAgent, Logger: log}, maxConns)
	if err != nil {
		return nil, fmt.Errorf("firehose: %w", err)
	}
	client := firehose.NewFromConfig(awsCfg, func(o *firehose.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.Retryer = aws.NopRetryer{} // the agent's sender retries
	})
	o := &Output{name: name, cfg: cfg, client: client, tr: tr, log: log, metrics: newMetrics(set.Registerer, name, cfg.Stream, set.OutputLabelled), now: time.Now}
	log.Info("firehose output ready", "stream", cfg.Stream, "region", awsCfg.Region, "assume_role", cfg.RoleARN != "", "aggregate_lines", cfg.AggregateLines)
	return o, nil
}

// Name returns the output's name.
func (o *Output) Name() string { return o.name }

// SendTimeout is the API call timeout (timeout): see outputs.SendTimeouter.
func (o *Output) SendTimeout() time.Duration { return o.cfg.Timeout }

// Close closes idle connections. It is idempotent.
func (o *Output) Close(context.Context) error {
	if !o.closed.Swap(true) {
		o.tr.CloseIdleConnections()
	}
	return nil
}

// Healthcheck asks DescribeDeliveryStream whether the stream is ACTIVE.
func (o *Output) Healthcheck(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	out, err := o.client.DescribeDeliveryStream(ctx, &firehose.DescribeDeliveryStreamInput{DeliveryStreamName: aws.String(o.cfg.Stream)})
	if err != nil {
		return fmt.Errorf("firehose: DescribeDeliveryStream %s: %w", o.cfg.Stream, err)
	}
	if d := out.DeliveryStreamDescription; d != nil && d.DeliveryStreamStatus != types.DeliveryStreamStatusActive {
		return fmt.Errorf("firehose: stream %s is %s", o.cfg.Stream, d.DeliveryStreamStatus)
	}
	return nil
}

// record is one Firehose record: user records [first, first+users) of
// batch record idx (in aggregate.ForEach order).
type record struct {
	idx   int
	data  []byte
	first int
	users int
}

// maxSplits bounds the request splits of one Send after whole-request
// validation errors (InvalidArgumentException, ValidationException), as
// the HTTP output bounds its splits after 400s: a stream that refuses
// every request would otherwise cost two requests per record.
const maxSplits = 128

// sendState is what one Send learns: the batch records that failed, the
// user records rejected alone, the splits spent.
type sendState struct {
	b        outputs.Batch
	failed   map[int]failure
	rejected []outputs.RejectedRecord
	users    []int // user records per batch record
	splits   int
}

// errClosed is returned by Send after Close.
var errClosed = errors.New("firehose: output closed")

// Send deaggregates the batch's records and puts their user records with
// PutRecordBatch: joined (each ended by "\n" with append_newline) into
// Firehose records of up to max_record_bytes with aggregate_lines, else one
// each. A Firehose record holds the user records of one batch record only,
// so that its failure is reported for that batch record (PartialError);
// a batch record sent as several Firehose records is retried whole when one
// fails (at-least-once). A user record over max_record_bytes, and the user
// records of a Firehose record refused alone (see send), are rejected on
// their own (outputs.RejectedRecordsError), the rest of their batch record
// delivered; a batch record all of whose user records are rejected is
// rejected whole.
func (o *Output) Send(ctx context.Context, b outputs.Batch) error {
	if o.closed.Load() {
		return errClosed
	}
	s := &sendState{b: b, failed: map[int]failure{}, users: make([]int, len(b.Records))}
	recs := o.translate(b, s)
	var whole error
	for start := 0; start < len(recs); {
		end, bytes := start, 0
		for end < len(recs) && end-start < o.cfg.MaxRequestRecords {
			if end > start && bytes+len(recs[end].data) > int(o.cfg.MaxRequestBytes) {
				break
			}
			bytes += len(recs[end].data)
			end++
		}
		req := recs[start:end]
		start = end
		if err := o.send(ctx, req, s); err != nil {
			if ctx.Err() != nil {
				return err
			}
			whole = err
			for _, r := range recs[start:] {
				s.notSent(r, err)
			}
			break
		}
	}
	return s.result(len(b.Records), whole)
}

// send puts req, split in halves (see halves) when refused whole as
// invalid. It returns the error that stops the Send (retryable or
// throttled, for the whole request), having marked the records of req not
// sent as failed; a record refused alone (or unsplit once the Send's splits
// are spent) has its user records rejected.
func (o *Output) send(ctx context.Context, req []record, s *sendState) error {
	err := o.put(ctx, req, s.failed)
	if err == nil || ctx.Err() != nil {
		return err
	}
	code := codeLabel(errorCode(err))
	if !outputs.IsPermanent(err) {
		o.metrics.failed.WithLabelValues(code).Add(float64(len(req)))
		var te *outputs.ThrottleError
		throttle := errors.As(err, &te)
		for _, r := range req {
			if f, ok := s.failed[r.idx]; !ok || f.permanent {
				s.failed[r.idx] = failure{reason: err.Error(), throttle: throttle}
			}
		}
		return err
	}
	if halves, ok := o.halves(req, s); ok {
		s.splits++
		o.metrics.splits.WithLabelValues(code).Inc()
		if err := o.send(ctx, halves[0], s); err != nil {
			for _, r := range halves[1] {
				s.notSent(r, err)
			}
			return err
		}
		return o.send(ctx, halves[1], s)
	}
	reason := err.Error()
	if len(req) > 1 || req[0].users > 1 {
		reason = fmt.Sprintf("%s (not split further: %d splits in this send already)", reason, s.splits)
	}
	o.metrics.failed.WithLabelValues(code).Add(float64(len(req)))
	for _, r := range req {
		for u := r.first; u < r.first+r.users; u++ {
			s.rejected = append(s.rejected, outputs.RejectedRecord{Record: r.idx, UserRecord: u, Reason: reason})
		}
	}
	return nil
}

// halves splits req refused whole in two, while the Send has splits left:
// its records in two halves, or a single record of joined user records in
// two records of half its user records each.
func (o *Output) halves(req []record, s *sendState) ([2][]record, bool) {
	switch {
	case s.splits >= maxSplits:
		return [2][]record{}, false
	case len(req) > 1:
		mid := len(req) / 2
		return [2][]record{req[:mid], req[mid:]}, true
	case req[0].users > 1:
		r := req[0]
		mid := r.first + r.users/2
		left, err := o.rejoin(&s.b.Records[r.idx], r.idx, r.first, mid)
		if err != nil {
			return [2][]record{}, false
		}
		right, err := o.rejoin(&s.b.Records[r.idx], r.idx, mid, r.first+r.users)
		if err != nil {
			return [2][]record{}, false
		}
		return [2][]record{{left}, {right}}, true
	}
	return [2][]record{}, false
}

// rejoin makes the Firehose record of user records [lo, hi) of batch record
// a (index idx), joined as translate joins them.
func (o *Output) rejoin(a *aggregate.Aggregate, idx, lo, hi int) (record, error) {
	r := record{idx: idx, first: lo, users: hi - lo}
	u := 0
	err := aggregate.ForEach(a, func(_, _, data []byte) error {
		if u >= lo && u < hi {
			r.data = append(r.data, data...)
			if n := len(data); o.cfg.AppendNewline && (n == 0 || data[n-1] != '\n') {
				r.data = append(r.data, '\n')
			}
		}
		u++
		return nil
	})
	return r, err
}

// notSent marks record r failed, retryable, after err stopped the Send.
func (s *sendState) notSent(r record, err error) {
	if f, ok := s.failed[r.idx]; !ok || f.permanent {
		s.failed[r.idx] = failure{reason: "not sent: " + err.Error()}
	}
}

type failure struct {
	reason    string
	permanent bool
	throttle  bool
}

// result is Send's outcome: user records rejected alone are reported as
// an outputs.RejectedRecordsError, unless their batch record failed as a
// whole (it is retried or dead-lettered whole, they with it) or every user
// record of it was rejected (it is dead-lettered whole, with the first
// reason).
func (s *sendState) result(n int, whole error) error {
	failed := s.failed
	slices.SortFunc(s.rejected, func(a, b outputs.RejectedRecord) int {
		return cmp.Or(cmp.Compare(a.Record, b.Record), cmp.Compare(a.UserRecord, b.UserRecord))
	})
	var rejected []outputs.RejectedRecord
	for k := 0; k < len(s.rejected); {
		i, end := s.rejected[k].Record, k+1
		for end < len(s.rejected) && s.rejected[end].Record == i {
			end++
		}
		switch _, ok := failed[i]; {
		case ok:
		case end-k == s.users[i]:
			failed[i] = failure{reason: s.rejected[k].Reason, permanent: true}
		default:
			rejected = append(rejected, s.rejected[k:end]...)
		}
		k = end
	}
	return outputs.WithRejected(rejected, s.failures(n, whole))
}

func (s *sendState) failures(n int, whole error) error {
	failed := s.failed
	if len(failed) == 0 {
		return nil
	}
	idxs := make([]int, 0, len(failed))
	allPermanent, throttle := true, false
	for i, f := range failed {
		idxs = append(idxs, i)
		allPermanent = allPermanent && f.permanent
		throttle = throttle || f.throttle
	}
	slices.Sort(idxs)
	reasons := make([]string, len(idxs))
	for k, i := range idxs {
		reasons[k] = failed[i].reason
	}
	first := reasons[0]
	if allPermanent {
		return outputs.Rejected(idxs, reasons, n, fmt.Errorf("firehose: %s", first))
	}
	var err error
	switch {
	case whole != nil:
		err = whole
	case throttle:
		err = outputs.Throttle(fmt.Errorf("firehose: %d of %d records not delivered, throttled (%s)", len(idxs), n, first), 0)
	default:
		err = fmt.Errorf("firehose: %d of %d records not delivered (%s)", len(idxs), n, first)
	}
	if len(idxs) == n {
		return err
	}
	return &outputs.PartialError{Failed: idxs, Reasons: reasons, Err: err}
}

// translate packs the user records of each batch record into Firehose
// records. A user record that cannot fit a Firehose record is rejected on
// its own (s.rejected); one that does not decode fails its batch record
// permanently.
func (o *Output) translate(b outputs.Batch, s *sendState) []record {
	var recs []record
	limit := int(o.cfg.MaxRecordSize)
	for i := range b.Records {
		mark := len(recs)
		var cur []byte
		users, u := 0, 0 // user records in cur; index of the next one
		flush := func() {
			if users > 0 {
				recs = append(recs, record{idx: i, data: cur, first: u - users, users: users})
			}
			cur, users = nil, 0
		}
		err := aggregate.ForEach(&b.Records[i], func(_, _, data []byte) error {
			n := len(data)
			nl := o.cfg.AppendNewline && (n == 0 || data[n-1] != '\n')
			if nl {
				n++
			}
			if n > limit {
				// Records stay runs of consecutive user records.
				flush()
				s.rejected = append(s.rejected, outputs.RejectedRecord{Record: i, UserRecord: u,
					Reason: fmt.Sprintf("firehose: user record of %d bytes, more than max_record_bytes %d", n, limit)})
				o.metrics.failed.WithLabelValues("RecordTooLarge").Inc()
				u++
				return nil
			}
			if !o.cfg.AggregateLines || len(cur)+n > limit {
				flush()
			}
			if cur == nil {
				cur = make([]byte, 0, min(limit, max(n, 64<<10)))
			}
			cur = append(cur, data...)
			if nl {
				cur = append(cur, '\n')
			}
			users++
			u++
			return nil
		})
		s.users[i] = u
		if err != nil {
			recs = recs[:mark]
			s.failed[i] = failure{reason: fmt.Sprintf("firehose: record %d of the batch: %v", i, err), permanent: true}
			continue
		}
		flush()
	}
	return recs
}

// put sends one PutRecordBatch and notes its records' failures. It returns
// the whole-request error, classified, for send to act on.
func (o *Output) put(ctx context.Context, req []record, failed map[int]failure) error {
	in := &firehose.PutRecordBatchInput{DeliveryStreamName: aws.String(o.cfg.Stream), Records: make([]types.Record, len(req))}
	for j := range req {
		in.Records[j] = types.Record{Data: req[j].data}
	}
	cctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	out, err := o.client.PutRecordBatch(cctx, in)
	cancel()
	if err == nil && len(out.RequestResponses) != len(req) {
		err = fmt.Errorf("firehose: PutRecordBatch answered %d results for %d records", len(out.RequestResponses), len(req))
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errorCode(err) == "ResourceNotFoundException" {
			o.warnEvery("Firehose stream not found: records wait in the spool until it exists (create it, or fix stream/region)", "stream", o.cfg.Stream)
		}
		return classify(fmt.Errorf("firehose: PutRecordBatch %s: %w", o.cfg.Stream, err))
	}
	for j, r := range out.RequestResponses {
		e := &req[j]
		if r.ErrorCode != nil {
			code := *r.ErrorCode
			o.metrics.failed.WithLabelValues(code).Inc()
			throttle := throttleCodes[code]
			if throttle {
				o.metrics.throttled.Inc()
			}
			reason := code
			if r.ErrorMessage != nil {
				reason += ": " + *r.ErrorMessage
			}
			failed[e.idx] = failure{reason: reason, throttle: throttle}
			continue
		}
		o.metrics.records.Inc()
		o.metrics.userRecords.Add(float64(e.users))
		o.metrics.bytes.Add(float64(len(e.data)))
	}
	return nil
}

func codeLabel(code string) string {
	if code == "" {
		return "RequestError"
	}
	return code
}

// throttleCodes mean "slow down" (Firehose throttles with
// ServiceUnavailableException).
var throttleCodes = map[string]bool{
	"ServiceUnavailableException": true,
	"LimitExceededException":      true,
	"ThrottlingException":         true,
	"Throttling":                  true,
	"TooManyRequestsException":    true,
}

// permanentCodes are about the request itself: retrying cannot help.
var permanentCodes = map[string]bool{
	"InvalidArgumentException": true,
	"ValidationException":      true,
	"SerializationException":   true,
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// classify wraps a whole-request error for the sender: throttling as
// Throttle, validation as Permanent, the rest (5xx, network, a missing
// stream, access and KMS errors) retryable.
func classify(err error) error {
	code := errorCode(err)
	switch {
	case throttleCodes[code]:
		return outputs.Throttle(err, 0)
	case permanentCodes[code]:
		return outputs.Permanent(err)
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusTooManyRequests {
		return outputs.Throttle(err, 0)
	}
	return err
}

// warnEvery logs at most once per 30 s.
func (o *Output) warnEvery(msg string, args ...any) {
	now := o.now().UnixNano()
	prev := o.lastWarn.Load()
	if prev != 0 && now-prev < int64(30*time.Second) {
		return
	}
	if o.lastWarn.CompareAndSwap(prev, now) {
		o.log.Warn(msg, args...)
	}
}

// metrics are one output's collectors, labelled output and stream.
type metrics struct {
	userRecords, records, bytes, throttled prometheus.Counter
	failed, splits                         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, output, stream string, outputLabelled bool) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	labels := []string{"output", "stream"}
	l := prometheus.Labels{"output": output, "stream": stream}
	if outputLabelled { // the registerer adds output=<name> itself
		labels = labels[1:]
		delete(l, "output")
	}
	counter := func(name, help string) prometheus.Counter {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)).With(l)
	}
	return &metrics{
		userRecords: counter("agent_firehose_user_records_put_total", "User records delivered to Firehose."),
		records:     counter("agent_firehose_records_put_total", "Firehose records delivered (joined lines count once)."),
		bytes:       counter("agent_firehose_bytes_put_total", "Bytes of Firehose records delivered."),
		throttled:   counter("agent_firehose_throttled_records_total", "Firehose records refused with ServiceUnavailableException (throttling); retried."),
		failed: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_firehose_failed_records_total",
			Help: "Firehose records not delivered, by error code; retried unless the code is a validation error.",
		}, append(labels[:len(labels):len(labels)], "code"))).MustCurryWith(l),
		splits: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_firehose_split_requests_total",
			Help: "PutRecordBatch requests refused whole as invalid and sent again in two halves, by error code.",
		}, append(labels[:len(labels):len(labels)], "code"))).MustCurryWith(l),
	}
}

// register registers c, or returns the collector of that name already
// registered (another Firehose output on the same registerer).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
