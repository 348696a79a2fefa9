package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// Failure classes of a spool entry, ordered: retryable wins over permanent
// when an entry fails both ways.
const (
	classOK uint8 = iota
	classPermanent
	classRetry
)

// send is the state of one Send. The producer's promises (run one at a time
// on franz-go's promise goroutine) and the Send goroutine share it: left and
// pending are atomic, fails is guarded by mu. Send returns only once every
// promise ran, so a send is always reused (pooled) and its records may
// alias the batch: the producer no longer reads them.
type send struct {
	o     *Output
	start time.Time
	buf   []byte       // format kpl: the Kinesis encodings of the aggregates; copies: the batch's bytes
	krecs []kgo.Record // one per Kafka record; keys and values alias the batch unless copies
	// copies is set when the producer may fail a record while a request
	// holding it is being written (idempotent: false cancels in-flight
	// requests at the deadline): keys and values are then copied into buf.
	// The idempotent producer never fails a record whose request it began
	// to write before the broker answered it, so Send, which waits for
	// every promise, may lend it the batch itself.
	copies bool
	cl     *kgo.Client // the producer of this Send
	topics map[string]string

	left    []atomic.Int32 // per entry: Kafka records not settled
	pending atomic.Int64   // Kafka records not settled, +1 while producing
	done    chan struct{}  // closed when pending reaches 0

	first []int // per entry: the index in krecs of its first Kafka record

	mu       sync.Mutex
	fails    []failure // per entry
	suspects []suspect // records refused as too large, to check alone
	// rejected are the user records of aggregates refused alone for good
	// (written by checkAlone, on the Send goroutine).
	rejected []outputs.RejectedRecord
}

// suspect is a Kafka record of entry i that the broker refused as too
// large. The broker judges whole record batches, so the record may only
// have shared a batch with an oversized one: it is sent again alone before
// it is judged.
type suspect struct {
	i          int
	r          *kgo.Record // the record in krecs, to find its user record's index
	topic      string
	key, value []byte
}

type failure struct {
	class  uint8
	err    error
	reason string
}

// Send delivers b: each spool entry is reported delivered only when every
// Kafka record made from it was acknowledged. See the package documentation.
func (o *Output) Send(ctx context.Context, b outputs.Batch) error {
	if o.closed.Load() {
		return errClosed
	}
	if len(b.Records) == 0 {
		return nil
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, o.cfg.SendTimeout)
	defer cancel()
	s := o.getSend(b)
	s.produce(ctx, b.Records)
	if s.pending.Add(-1) == 0 {
		close(s.done)
	}
	o.wait(parent, ctx, func(stopping bool) { o.resetClient(s.cl, time.Since(s.start), stopping) }, s.done, &s.pending)
	if len(s.suspects) > 0 {
		s.checkAlone(parent, ctx, b.Records)
	}
	err := s.result(ctx)
	o.putSend(s)
	return err
}

// wait returns when done is closed: every record handed to the producer
// was acknowledged or failed, and the producer no longer reads it (the
// records alias the batch, which the caller reuses once Send returns).
// At ctx's end the producer fails the records it has not sent yet (their
// context is done) at once; a record in a request whose outcome is unknown
// (a connection cut, a broker stopped) is resent by the idempotent producer
// with the same sequence numbers until the broker answers, and Send waits
// for that answer: it is then known whether the record was written, so
// none is written twice, and the backlog waits in the spool rather than in
// the producer's memory. When parent (the sender's context) ends, the agent
// is stopping and its deadline comes first: the producer is replaced at once
// (its records fail, retryable; they stay in the spool and are sent after
// the next start, perhaps a second time if the broker had written them).
func (o *Output) wait(parent, ctx context.Context, reset func(stopping bool), done <-chan struct{}, pending *atomic.Int64) {
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	t := time.NewTimer(outcomeWaitLog)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-parent.Done():
		reset(true)
		<-done
		return
	case <-t.C:
		o.rl.logf(slog.LevelWarn, "outcome_wait", "records in requests the broker has not answered are waited for (the broker is unreachable?): they are resent until it answers, so none is written twice",
			"records", pending.Load(), "send_timeout", o.cfg.SendTimeout)
	}
	// outcomeWaitMax at most: then the producer is replaced, and closing
	// it fails the records (Close returns once it no longer reads them).
	t.Reset(o.waitMax)
	select {
	case <-done:
	case <-parent.Done():
		reset(true)
		<-done
	case <-t.C:
		reset(false)
		<-done
	}
}

func (o *Output) getSend(b outputs.Batch) *send {
	s, ok := o.sends.Get().(*send)
	if !ok {
		s = &send{o: o, topics: make(map[string]string)}
	}
	s.start = time.Now()
	s.cl = o.client()
	s.done = make(chan struct{})
	s.pending.Store(1)
	n := len(b.Records)
	if cap(s.left) < n {
		s.left = make([]atomic.Int32, n)
		s.fails = make([]failure, n)
		s.first = make([]int, n)
	} else {
		s.left, s.fails, s.first = s.left[:n], s.fails[:n], s.first[:n]
	}
	s.copies = !o.cfg.Idempotent
	size, recs := 0, 0
	for i := range b.Records {
		a := &b.Records[i]
		if s.copies {
			size += len(a.PartitionKey) + len(a.Body)
		}
		if o.cfg.Format == FormatKPL {
			size += a.KinesisAggregateSize()
		}
		recs += max(a.Count, 1)
	}
	if o.cfg.Format == FormatKPL {
		recs = n
	}
	if cap(s.buf) < size {
		s.buf = make([]byte, 0, size)
	}
	if cap(s.krecs) < recs {
		s.krecs = make([]kgo.Record, 0, recs)
	}
	return s
}

// maxPooledBytes keeps a Send's encoding buffer (format kpl) pooled up to
// this size.
const maxPooledBytes = 16 << 20

func (o *Output) putSend(s *send) {
	if cap(s.buf) > maxPooledBytes {
		return
	}
	s.buf = s.buf[:0]
	clear(s.krecs[:cap(s.krecs)])
	s.krecs = s.krecs[:0]
	s.cl = nil
	clear(s.fails)
	clear(s.suspects)
	s.suspects = s.suspects[:0]
	clear(s.rejected)
	s.rejected = s.rejected[:0]
	clear(s.topics)
	o.sends.Put(s)
}

// copyBytes appends b to s.buf, whose capacity was sized for the batch, and
// returns the copy.
func (s *send) copyBytes(b []byte) []byte {
	off := len(s.buf)
	s.buf = append(s.buf, b...)
	return s.buf[off:len(s.buf):len(s.buf)]
}

func (s *send) produce(ctx context.Context, recs []aggregate.Aggregate) {
	o := s.o
	for i := range recs {
		s.first[i] = len(s.krecs)
		if err := ctx.Err(); err != nil {
			s.fail(i, classRetry, fmt.Errorf("kafka: not produced before the send deadline: %w", err), "")
			continue
		}
		promise := func(r *kgo.Record, err error) { s.settle(i, r, err) }
		if o.cfg.Format == FormatKPL {
			src := &recs[i]
			key := readOnly(src.PartitionKey)
			if src.Aggregated {
				key = nil
				_ = aggregate.ForEach(src, func(p, _, _ []byte) error { // the first user record's key
					key = p
					return errFirst
				})
			}
			if s.copies {
				key = s.copyBytes(key)
			}
			// A plain record with an explicit hash key goes as an aggregate
			// of one record, the key in its table: a Kafka record has no
			// place beside the value for it (Kinesis has), and a consumer
			// reads it as it reads those of larger aggregates.
			off := len(s.buf)
			s.buf = src.AppendKinesisAggregate(s.buf)
			s.add(ctx, i, promise, o.cfg.Topic, key, s.buf[off:len(s.buf):len(s.buf)])
			continue
		}
		// Keys and values alias the batch (see copies).
		a := recs[i]
		pk := readOnly(a.PartitionKey)
		if s.copies {
			a.Body, pk = s.copyBytes(a.Body), s.copyBytes(pk)
		}
		if !a.Aggregated {
			s.add(ctx, i, promise, s.topic(a.Body), pk, a.Body)
			continue
		}
		err := aggregate.ForEach(&a, func(key, _, data []byte) error {
			if ctx.Err() != nil {
				return errDeadline
			}
			s.add(ctx, i, promise, s.topic(data), key, data)
			return nil
		})
		switch {
		case err == nil:
		case errors.Is(err, errDeadline):
			s.fail(i, classRetry, fmt.Errorf("kafka: not produced before the send deadline: %w", ctx.Err()), "")
		default: // ForEach validates the whole aggregate first: nothing of it was produced
			err = fmt.Errorf("kafka: decode record %d of the batch: %w", i, err)
			s.fail(i, classPermanent, outputs.Permanent(err), err.Error())
		}
	}
}

var (
	errFirst    = errors.New("kafka: first record found")
	errDeadline = errors.New("kafka: send deadline")
)

// add hands one Kafka record of entry i to the producer; promise is entry
// i's (one closure per entry, not per record).
func (s *send) add(ctx context.Context, i int, promise func(*kgo.Record, error), topic string, key, value []byte) {
	if s.o.cfg.Key == KeyNone {
		key = nil
	}
	// One timestamp per Send (CreateTime): franz-go would read the clock
	// once per record (7% of the agent's CPU in make bench-kafka).
	s.krecs = append(s.krecs, kgo.Record{Topic: topic, Key: key, Value: value, Timestamp: s.start})
	r := &s.krecs[len(s.krecs)-1]
	s.left[i].Add(1)
	s.pending.Add(1)
	s.cl.Produce(ctx, r, promise)
}

// topic returns the topic of a user record: its TopicField when set and
// valid, else the configured topic.
func (s *send) topic(data []byte) string {
	o := s.o
	if o.cfg.TopicField == "" {
		return o.cfg.Topic
	}
	t, ok := jsonStringAt(data, o.cfg.TopicField, o.topicPath)
	switch {
	case !ok:
		o.m.fallback.WithLabelValues(fallbackMissing).Inc()
		return o.cfg.Topic
	case !validTopic(string(t)): // no allocation
		o.m.fallback.WithLabelValues(fallbackInvalid).Inc()
		return o.cfg.Topic
	}
	if v, ok := s.topics[string(t)]; ok {
		return v
	}
	v := string(t)
	s.topics[v] = v
	return v
}

// settle is the promise of one Kafka record of entry i.
func (s *send) settle(i int, r *kgo.Record, err error) {
	o := s.o
	if err == nil {
		tm := o.m.topic(r.Topic)
		tm.records.Inc()
		tm.bytes.Add(float64(len(r.Key) + len(r.Value)))
		tm.latency.Observe(time.Since(s.start).Seconds())
	} else if isAny(err, tooLargeCodes) {
		s.mu.Lock()
		s.suspects = append(s.suspects, suspect{i: i, r: r, topic: r.Topic, key: r.Key, value: r.Value})
		s.mu.Unlock()
	} else {
		if errors.Is(err, kerr.UnknownTopicID) {
			o.purgeRecreated(s.cl, r.Topic)
		}
		class, code, reason := o.classify(r, err)
		o.m.errors.WithLabelValues(r.Topic, code).Inc()
		s.fail(i, class, fmt.Errorf("kafka: produce to topic %s: %w", r.Topic, err), reason)
	}
	s.left[i].Add(-1)
	if s.pending.Add(-1) == 0 {
		close(s.done)
	}
}

func (s *send) fail(i int, class uint8, err error, reason string) {
	s.mu.Lock()
	if f := &s.fails[i]; class > f.class {
		f.class, f.err, f.reason = class, err, reason
	}
	s.mu.Unlock()
}

// permanentCodes are broker answers that no retry can change for the
// record: it is dead-lettered with the reason.
var permanentCodes = []error{
	kerr.MessageTooLarge,    // a record larger than the topic's max.message.bytes (or batch_max_bytes)
	kerr.RecordListTooLarge, // likewise for the batch
	kerr.InvalidRecord,      // refused by the broker's validation (e.g. a compacted topic without key)
	kerr.CorruptMessage,     // the broker's CRC check failed on this record
	kerr.InvalidTopicException,
	kerr.InvalidRequiredAcks,
}

// tooLargeCodes are the answers to a record batch too large for the topic
// (or for Config.BatchMaxBytes, a check franz-go makes per record).
var tooLargeCodes = []error{kerr.MessageTooLarge, kerr.RecordListTooLarge}

// checkAlone sends the suspects one at a time through a producer that
// buffers one record, so each is a batch of its own and the broker's answer
// is about that record. A user record of a KPL aggregate (format records)
// refused alone for good is rejected alone (s.rejected): the rest of its
// aggregate may be delivered. Like Send, it waits for the outcome of a
// record sent (it aliases the batch).
func (s *send) checkAlone(parent, ctx context.Context, recs []aggregate.Aggregate) {
	o := s.o
	s.mu.Lock()
	sus := s.suspects
	s.suspects = nil
	s.mu.Unlock()
	cl, err := o.soloClient()
	if err != nil {
		for _, x := range sus {
			s.fail(x.i, classRetry, fmt.Errorf("kafka: produce to topic %s: %w", x.topic, err), "")
		}
		return
	}
	type answer struct {
		r   *kgo.Record
		err error
	}
	for k, x := range sus {
		if ctx.Err() != nil {
			for _, y := range sus[k:] {
				s.fail(y.i, classRetry, fmt.Errorf("kafka: not produced before the send deadline: %w", ctx.Err()), "")
			}
			return
		}
		r := &kgo.Record{Topic: x.topic, Key: x.key, Value: x.value}
		var a answer
		done := make(chan struct{})
		var pending atomic.Int64
		pending.Store(1)
		cl.Produce(ctx, r, func(r *kgo.Record, err error) { a = answer{r, err}; close(done) })
		o.wait(parent, ctx, func(bool) { o.resetSolo(cl) }, done, &pending) // the record aliases the batch
		if a.err == nil {
			tm := o.m.topic(x.topic)
			tm.records.Inc()
			tm.bytes.Add(float64(len(x.key) + len(x.value)))
			tm.latency.Observe(time.Since(s.start).Seconds())
			continue
		}
		if errors.Is(a.err, kerr.UnknownTopicID) {
			o.purgeRecreated(cl, x.topic)
		}
		class, code, reason := o.classify(a.r, a.err)
		o.m.errors.WithLabelValues(x.topic, code).Inc()
		if class == classPermanent && o.cfg.Format == FormatRecords && recs[x.i].Aggregated {
			if u, ok := s.userRecord(x); ok {
				s.rejected = append(s.rejected, outputs.RejectedRecord{Record: x.i, UserRecord: u, Reason: reason})
				continue
			}
		}
		s.fail(x.i, class, fmt.Errorf("kafka: produce to topic %s: %w", x.topic, a.err), reason)
	}
}

// userRecord returns the index, inside its aggregate, of the user record
// that suspect x was made from: entry i's Kafka records are consecutive in
// krecs, one per user record in order. Settled records are no longer read
// by the producer, so krecs may be read here.
func (s *send) userRecord(x suspect) (int, bool) {
	end := len(s.krecs)
	if x.i+1 < len(s.first) {
		end = s.first[x.i+1]
	}
	for k := s.first[x.i]; k < end && k < len(s.krecs); k++ {
		if &s.krecs[k] == x.r {
			return k - s.first[x.i], true
		}
	}
	return 0, false // krecs grew past its capacity (a wrong Count): judge the whole entry
}

// authCodes are retried (ACLs may be fixed) and logged at most once per
// logInterval.
var authCodes = []error{
	kerr.TopicAuthorizationFailed,
	kerr.ClusterAuthorizationFailed,
	kerr.TransactionalIDAuthorizationFailed,
	kerr.SaslAuthenticationFailed,
	kerr.IllegalSaslState,
	kerr.UnsupportedSaslMechanism,
}

// idempotentHint says what an idempotent producer refused with
// CLUSTER_AUTHORIZATION_FAILED (by InitProducerId) lacks.
const idempotentHint = "the idempotent producer (idempotent: true, the default) needs WRITE on the topic (Kafka 3.0+) or " +
	"IDEMPOTENT_WRITE on the cluster (older Kafka; Amazon MSK with IAM: kafka-cluster:WriteDataIdempotently): " +
	"grant it, or set idempotent: false"

// classify returns a failed record's class, its metric code and, for a
// permanent failure, the dead-letter reason. It logs, rate-limited.
func (o *Output) classify(r *kgo.Record, err error) (class uint8, code, reason string) {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		code = ke.Message
	}
	for _, p := range permanentCodes {
		if errors.Is(err, p) {
			reason = fmt.Sprintf("kafka: topic %s rejected a record of %d bytes (key %d bytes): %v", r.Topic, len(r.Value), len(r.Key), err)
			o.rl.logf(slog.LevelError, "permanent:"+code+":"+r.Topic, "a record was rejected for good: dead-lettered",
				"topic", r.Topic, "code", code, "value_bytes", len(r.Value), "error", err)
			return classPermanent, code, reason
		}
	}
	switch {
	case errors.Is(err, kerr.UnknownTopicID): // logged by purgeRecreated
		return classRetry, code, ""
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		o.rl.logf(slog.LevelWarn, "unknown_topic:"+r.Topic, "topic does not exist: its records are retried (it may be created later)",
			"topic", r.Topic)
		return classRetry, code, ""
	case isAny(err, authCodes):
		args := []any{"topic", r.Topic, "code", code, "error", err}
		if o.cfg.Idempotent && errors.Is(err, kerr.ClusterAuthorizationFailed) {
			// InitProducerId refused: the error names no topic.
			args = append(args, "hint", idempotentHint)
		}
		o.rl.logf(slog.LevelError, "auth:"+code+":"+r.Topic, "not authorized: records are retried until the credentials or ACLs are fixed", args...)
		return classRetry, code, ""
	case code != "":
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrRecordTimeout):
		code = "timeout"
	case errors.Is(err, context.Canceled):
		code = "canceled"
	default:
		code = "client"
	}
	o.rl.logf(slog.LevelWarn, "retry:"+code, "records not acknowledged: retried", "topic", r.Topic, "code", code, "error", err)
	return classRetry, code, ""
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// result turns the entries' fates into Send's error. It runs after every
// record settled, or at the deadline: an entry with records still in the
// producer is retryable.
func (s *send) result(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		failed       []int
		reasons      []string
		first        error
		allPermanent = true
	)
	for i := range s.fails {
		f := s.fails[i]
		if f.class == classOK && s.left[i].Load() != 0 {
			f = failure{class: classRetry, err: fmt.Errorf("kafka: not acknowledged within send_timeout %s: %w", s.o.cfg.SendTimeout, ctx.Err())}
		}
		if f.class == classOK {
			continue
		}
		failed = append(failed, i)
		reason := f.reason
		if reason == "" {
			reason = f.err.Error()
		}
		reasons = append(reasons, reason)
		if f.class == classRetry {
			allPermanent = false
			if first == nil || outputs.IsPermanent(first) {
				first = f.err
			}
		} else if first == nil {
			first = f.err
		}
	}
	// A user record rejected alone is reported only when the rest of its
	// entry was delivered; a failed entry is retried or dead-lettered whole.
	rejected := s.rejected[:0:0]
	for _, r := range s.rejected {
		if s.fails[r.Record].class == classOK && s.left[r.Record].Load() == 0 {
			rejected = append(rejected, r)
		}
	}
	if len(failed) == 0 {
		return outputs.WithRejected(rejected, nil)
	}
	if allPermanent && !outputs.IsPermanent(first) {
		first = outputs.Permanent(first)
	}
	if len(failed) == len(s.fails) {
		if f := s.o.conns.failing(); f != nil && !outputs.IsPermanent(first) {
			return &unreachableError{f: f, err: first}
		}
		return first
	}
	return outputs.WithRejected(rejected, &outputs.PartialError{Failed: failed, Reasons: reasons, Err: first})
}
