package kinesis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// entry is one Kinesis record of a PutRecords request.
type entry struct {
	idx int // the batch record it carries (all or part of)
	// rec is the Kinesis record: an aggregate's Body is its protobuf
	// message, framed (magic, MD5) as it is written into the request body,
	// so that its bytes are copied once, into the body.
	rec   aggregate.Aggregate
	shard int // the shard the map predicts, an index into it
}

func (e *entry) size() int { return e.rec.Size() }

// failure is why a batch record was not delivered.
type failure struct {
	reason    string
	permanent bool
}

// sendState is one Send's bookkeeping.
type sendState struct {
	m        *aggregate.ShardMap
	failed   map[int]failure
	throttle bool  // some entry was throttled
	whole    error // a retryable whole-request error, classified
}

func (s *sendState) fail(idx int, reason string, permanent bool) {
	if f, ok := s.failed[idx]; ok && !f.permanent {
		return // a record with a retryable part is retried whole
	}
	s.failed[idx] = failure{reason: reason, permanent: permanent}
}

// Send puts the batch's records with PutRecords, in requests of at most
// max_request_records and max_request_bytes, paced per shard by the rate
// limiter. Before sending it routes each record against the current shard
// map: an aggregate built against an older map whose sub-records would not
// all lie in the shard it lands on is split and re-aggregated (the KCL
// would drop it whole). With aggregation off, each user record is its own
// Kinesis record. Only the batch records with a failed entry are reported
// (outputs.PartialError); a record split in several entries is retried
// whole when one of them fails (at-least-once: the others are duplicated).
func (o *Output) Send(ctx context.Context, b outputs.Batch) error {
	if o.closing.Load() {
		return errClosed
	}
	if len(b.Records) == 0 {
		return nil
	}
	m, err := o.current(ctx)
	if err != nil {
		// Without a shard map nothing is sent; never permanent: the
		// records are fine.
		if c := classify(ctx, err); !outputs.IsPermanent(c) {
			return c
		}
		return err
	}
	st := &sendState{m: m, failed: make(map[int]failure)}
	entries := o.translate(st, b)

	for start := 0; start < len(entries); {
		end, bytes := start, 0
		for end < len(entries) && end-start < o.cfg.MaxRequestRecords {
			sz := entries[end].size()
			if end > start && bytes+sz > int(o.cfg.MaxRequestBytes) {
				break
			}
			bytes += sz
			end++
		}
		req := entries[start:end]
		start = end
		if err := o.pace(ctx, m, req); err != nil {
			return err
		}
		if err := o.put(ctx, st, req); err != nil {
			if ctx.Err() != nil {
				return err
			}
			// Stop: the records not sent yet are retried with these.
			for _, e := range entries[start:] {
				st.fail(e.idx, "not sent: "+err.Error(), false)
			}
			break
		}
	}
	return st.result(len(b.Records))
}

// result turns the failures into Send's error.
func (s *sendState) result(n int) error {
	if len(s.failed) == 0 {
		return nil
	}
	idxs := make([]int, 0, len(s.failed))
	allPermanent := true
	for i, f := range s.failed {
		idxs = append(idxs, i)
		allPermanent = allPermanent && f.permanent
	}
	slices.Sort(idxs)
	reasons := make([]string, len(idxs))
	for k, i := range idxs {
		reasons[k] = s.failed[i].reason
	}
	first := s.failed[idxs[0]].reason
	if allPermanent {
		if !strings.HasPrefix(first, "kinesis: ") { // a whole request's error has it already
			first = "kinesis: " + first
		}
		return outputs.Rejected(idxs, reasons, n, errors.New(first))
	}
	var err error
	switch {
	case s.whole != nil:
		err = s.whole
	case s.throttle:
		err = outputs.Throttle(fmt.Errorf("kinesis: %d of %d records not delivered, throttled (%s)", len(idxs), n, first), 0)
	default:
		err = fmt.Errorf("kinesis: %d of %d records not delivered (%s)", len(idxs), n, first)
	}
	if len(idxs) == n {
		return err
	}
	return &outputs.PartialError{Failed: idxs, Reasons: reasons, Err: err}
}

// translate turns the batch into the entries to put, routed against st.m.
// Records that cannot be sent (keys Kinesis refuses, too large, a malformed
// aggregate) are failed permanently with their reason.
func (o *Output) translate(st *sendState, b outputs.Batch) []entry {
	m := st.m
	entries := make([]entry, 0, len(b.Records))
	limit := int(o.cfg.MaxRecordSize)
	for i := range b.Records {
		a := &b.Records[i]
		if !a.Aggregated || !o.cfg.Aggregation {
			mark := len(entries)
			err := aggregate.ForEach(a, func(pk, ehk, data []byte) error {
				e := entry{idx: i, rec: aggregate.Aggregate{PartitionKey: string(pk), ExplicitHashKey: string(ehk), Body: data, Count: 1}}
				if err := checkRecord(&e, limit); err != nil {
					return err
				}
				shard, err := m.RouteKeys(e.rec.PartitionKey, e.rec.ExplicitHashKey)
				if err != nil {
					return err
				}
				e.shard = shard
				entries = append(entries, e)
				return nil
			})
			if err != nil {
				entries = entries[:mark]
				st.fail(i, err.Error(), true)
			}
			continue
		}
		if size := a.Size(); size > limit {
			st.fail(i, fmt.Sprintf("aggregate of %d bytes, more than max_record_bytes %d", size, limit), true)
			continue
		}
		shard, err := m.Route(a)
		if err != nil {
			st.fail(i, err.Error(), true)
			continue
		}
		covered, err := m.Covers(a, shard)
		if err != nil {
			st.fail(i, err.Error(), true)
			continue
		}
		if covered {
			entries = append(entries, entry{idx: i, rec: *a, shard: shard})
			continue
		}
		// Built against an older map: re-aggregate against this one.
		mark := len(entries)
		sp, err := o.splitter(m)
		if err == nil {
			err = sp.Split(a, func(p *aggregate.Aggregate) error {
				shard, err := m.Route(p)
				if err != nil {
					return err
				}
				rec := *p
				rec.Body = append([]byte(nil), p.Body...) // p's aliases the Splitter's buffers
				entries = append(entries, entry{idx: i, rec: rec, shard: shard})
				return nil
			})
			o.splitters.put(sp)
		}
		if err != nil {
			entries = entries[:mark]
			st.fail(i, fmt.Sprintf("re-aggregating against the new shard map: %v", err), true)
			continue
		}
		o.metrics.split.Inc()
	}
	return entries
}

// splitterPool keeps the Splitters of one shard map for reuse (each holds a
// Builder: its key cache is worth keeping).
type splitterPool struct {
	mu   sync.Mutex
	m    *aggregate.ShardMap
	free []*aggregate.Splitter
}

// maxFreeSplitters bounds the Splitters kept: one per concurrent Send is
// plenty, and each holds about 700 KiB.
const maxFreeSplitters = 4

// splitter returns a Splitter for m.
func (o *Output) splitter(m *aggregate.ShardMap) (*aggregate.Splitter, error) {
	p := &o.splitters
	p.mu.Lock()
	if p.m != m { // a new map: the old Splitters are of no use
		p.m, p.free = m, nil
	}
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	p.mu.Unlock()
	return aggregate.NewSplitter(m)
}

func (p *splitterPool) put(s *aggregate.Splitter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.Map() == p.m && len(p.free) < maxFreeSplitters {
		p.free = append(p.free, s)
	}
}

// checkRecord checks what PutRecords would refuse of a user record.
func checkRecord(e *entry, limit int) error {
	if err := aggregate.ValidatePartitionKey(e.rec.PartitionKey); err != nil {
		return err
	}
	if e.rec.ExplicitHashKey != "" {
		if _, err := aggregate.ParseHashKey(e.rec.ExplicitHashKey); err != nil {
			return err
		}
	}
	if size := e.size(); size > limit {
		return fmt.Errorf("record of %d bytes (data and partition key), more than max_record_bytes %d", size, limit)
	}
	return nil
}

// pace waits until the shards req puts to have room for it.
func (o *Output) pace(ctx context.Context, m *aggregate.ShardMap, req []entry) error {
	if o.limiter == nil {
		return nil
	}
	demands := make(map[string]demand, min(len(req), m.Len()))
	for i := range req {
		id := m.Shard(req[i].shard).ID
		d := demands[id]
		d.bytes += float64(req[i].size())
		d.records++
		demands[id] = d
	}
	wait := o.limiter.reserve(o.now(), demands)
	if wait <= 0 {
		return nil
	}
	o.metrics.limiterWait.Add(wait.Seconds())
	return o.sleep(ctx, wait)
}

// put sends one PutRecords request and notes what failed in st. It returns
// a whole-request error that must stop the Send (retryable); a permanent
// one fails the request's records and lets the Send go on.
func (o *Output) put(ctx context.Context, st *sendState, req []entry) error {
	in := &kinesis.PutRecordsInput{
		StreamName: aws.String(o.cfg.Stream),
		Records:    make([]types.PutRecordsRequestEntry, len(req)),
	}
	pr := o.getRequest()
	pr.in, pr.entries = in, req
	for j := range req {
		e := &req[j]
		in.Records[j] = types.PutRecordsRequestEntry{PartitionKey: aws.String(e.rec.PartitionKey)}
		if o.prepared {
			// The serializer writes the data from pr.entries.
			in.Records[j].Data = noData
		} else {
			in.Records[j].Data = e.rec.AppendKinesisData(nil)
		}
		if e.rec.ExplicitHashKey != "" {
			in.Records[j].ExplicitHashKey = aws.String(e.rec.ExplicitHashKey)
		}
	}
	cctx, cancel := context.WithTimeout(context.WithValue(ctx, requestKey{}, pr), o.cfg.Timeout)
	out, err := o.client.PutRecords(cctx, in)
	cancel()
	o.putRequest(pr)
	if err == nil && len(out.Records) != len(req) {
		err = fmt.Errorf("kinesis: PutRecords answered %d results for %d records", len(out.Records), len(req))
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		code := errorCode(err)
		if code == "" {
			code = "RequestError"
		}
		o.metrics.failed.WithLabelValues(code).Add(float64(len(req)))
		err = classify(ctx, o.describeError(fmt.Errorf("kinesis: PutRecords %s: %w", o.cfg.Stream, err), waitSpooled))
		if outputs.IsPermanent(err) {
			for _, e := range req {
				st.fail(e.idx, err.Error(), true)
			}
			return nil
		}
		var te *outputs.ThrottleError
		if errors.As(err, &te) && o.limiter != nil {
			now := o.now()
			for _, e := range req {
				o.limiter.throttled(st.m.Shard(e.shard).ID, now)
			}
		}
		for _, e := range req {
			st.fail(e.idx, err.Error(), false)
		}
		st.whole = err
		return err
	}

	var mismatched []int // aggregates that landed on another shard than predicted
	plainMismatches := 0
	var throttled map[string]bool
	for j, r := range out.Records {
		e := &req[j]
		predicted := st.m.Shard(e.shard).ID
		if r.ErrorCode != nil {
			code := *r.ErrorCode
			o.metrics.failed.WithLabelValues(code).Inc()
			if throttleCodes[code] {
				o.metrics.throttled.Inc()
				st.throttle = true
				if throttled == nil {
					throttled = make(map[string]bool)
				}
				throttled[predicted] = true
			}
			reason := code
			if r.ErrorMessage != nil {
				reason += ": " + *r.ErrorMessage
			}
			st.fail(e.idx, reason, false)
			continue
		}
		if r.ShardId != nil && *r.ShardId != predicted {
			if e.rec.Aggregated {
				mismatched = append(mismatched, j)
				continue
			}
			plainMismatches++ // Kinesis routed it by its own keys: fine wherever it is
		}
		o.delivered(e)
	}
	if o.limiter != nil && len(throttled) > 0 {
		now := o.now()
		for id := range throttled {
			o.limiter.throttled(id, now)
		}
	}
	if plainMismatches+len(mismatched) == 0 {
		return nil
	}
	o.metrics.mismatches.Add(float64(plainMismatches + len(mismatched)))
	// A reshard the map does not know yet. An aggregate that landed on a
	// shard not holding all its sub-records would be dropped by the KCL:
	// it is failed, to be sent again, split against the refreshed map.
	m := o.refreshAfterMismatch(ctx, st.m)
	for _, j := range mismatched {
		e := &req[j]
		actual := *out.Records[j].ShardId
		if i, ok := shardIndex(m, actual); ok {
			if covered, err := m.Covers(&e.rec, i); err == nil && covered {
				o.delivered(e)
				continue
			}
		}
		o.metrics.failed.WithLabelValues("ShardMismatch").Inc()
		st.fail(e.idx, fmt.Sprintf("the aggregate landed on shard %s, not on %s as predicted (a reshard): sent again, re-aggregated against the refreshed shard map",
			actual, st.m.Shard(e.shard).ID), false)
	}
	return nil
}

// delivered counts a delivered entry.
func (o *Output) delivered(e *entry) {
	size := e.size()
	o.metrics.records.Inc()
	o.metrics.userRecords.Add(float64(e.rec.Count))
	o.metrics.bytes.Add(float64(size))
	o.metrics.payloadUnits.Add(float64(payloadUnits(size)))
}

// shardIndex returns the index of the shard named id in m.
func shardIndex(m *aggregate.ShardMap, id string) (int, bool) {
	for i := range m.Len() {
		if m.Shard(i).ID == id {
			return i, true
		}
	}
	return 0, false
}
