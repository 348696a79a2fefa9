// Package fakeaws is an in-process Kinesis Data Streams and Firehose
// speaking the JSON 1.1 protocol the AWS SDK uses (and, for PutRecords, its
// CBOR form), for the agent's tests and benchmarks where kinesalite does not
// fit: reshards at a chosen moment, throttling, failures of chosen calls and
// entries, shard IDs of the test's choosing, signature checks, speed. Like
// the KCL, the fake Kinesis checks that every sub-record of an aggregate lies
// in the hash key range of the shard the aggregate lands on, and that its
// MD5 matches. Tests and benchmarks only; it is never part of the agent's
// binary.
package fakeaws

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/awscbor"
)

// Kinesis is a fake Kinesis Data Streams (ListShards, PutRecords,
// DescribeStreamSummary) of one stream, an http.Handler. Safe for
// concurrent use; the setters may be called while it serves.
type Kinesis struct {
	// KeepData keeps every Kinesis record and the data of every user
	// record (see Records, UserData); off, records are only counted and
	// checked (benchmarks). Set it before serving.
	KeepData bool

	mu     sync.Mutex
	shards []aggregate.Shard // open
	closed []aggregate.Shard
	// pageSize > 0 paginates ListShards.
	pageSize int
	// listErrors > 0 fails as many next ListShards calls with
	// LimitExceededException.
	listErrors int
	// missing answers every call ResourceNotFoundException (a stream
	// that does not exist).
	missing bool
	onPut   func(n int) // called (unlocked) after each PutRecords, with its entries

	// Per-shard throttling: a token bucket of limit records per second on
	// clock (nil: no throttling).
	clock   Clock
	limit   float64
	buckets map[string]*bucket

	failEntry func(pk string, data []byte) string // an error code for an entry, or ""
	shardID   func(real string) string            // the shard ID answered for an entry
	failPuts  []APIError                          // the next PutRecords calls' fates
	cutCBOR   int                                 // > 0: CBOR answers cut to that many bytes
	secrets   map[string]string                   // access key ID -> secret: signatures checked
	akids     []string                            // the access key ID of every request's signature

	stats      KinesisStats
	records    map[string][]Record // per shard ID (KeepData)
	data       map[string][]string // user records' data per shard ID (KeepData)
	violations []string
	seq        int64
}

// KinesisStats counts what the fake Kinesis received.
type KinesisStats struct {
	ListShards   int   // calls
	PutRecords   int   // calls, failed ones included
	CBORRequests int   // requests in CBOR
	Records      int64 // Kinesis records stored
	UserRecords  int64 // user records in them (deaggregated)
	Bytes        int64 // data plus partition keys
	PayloadUnits int64 // 25 KB units per record, rounded up (how PUT payload units are billed)
	Throttled    int   // entries refused by the throttle
	Failed       int   // entries failed by FailEntries
}

// Record is one Kinesis record stored (KeepData).
type Record struct {
	PartitionKey, ExplicitHashKey string
	Data                          []byte
}

// APIError is an error answer: its HTTP status and error code (__type).
type APIError struct {
	Status int
	Code   string
}

// Clock tells the throttle the time.
type Clock interface{ Now() time.Time }

type bucket struct {
	tokens float64
	last   time.Time
}

// PayloadUnit is the size of a PUT payload unit.
const PayloadUnit = 25 * 1024

// NewKinesis returns a fake stream of n shards named shardId-<index>
// splitting the hash key space evenly, as CreateStream does.
func NewKinesis(n int) *Kinesis {
	return &Kinesis{
		shards:  EvenShards(n, "shardId-"),
		buckets: map[string]*bucket{},
		records: map[string][]Record{},
		data:    map[string][]string{},
	}
}

// EvenShards splits the hash key space into n shards named prefix + index.
func EvenShards(n int, prefix string) []aggregate.Shard {
	shards := make([]aggregate.Shard, n)
	for i := range n {
		shards[i] = aggregate.Shard{ID: fmt.Sprintf("%s%012d", prefix, i), Start: splitPoint(i, n), End: aggregate.MaxHashKey}
		if i < n-1 {
			shards[i].End = fromBig(new(big.Int).Sub(toBig(splitPoint(i+1, n)), big.NewInt(1)))
		}
	}
	return shards
}

func splitPoint(i, n int) aggregate.HashKey {
	v := new(big.Int).Lsh(big.NewInt(int64(i)), 128)
	return fromBig(v.Div(v, big.NewInt(int64(n))))
}

func toBig(h aggregate.HashKey) *big.Int {
	v := new(big.Int).SetUint64(h.Hi)
	v.Lsh(v, 64)
	return v.Or(v, new(big.Int).SetUint64(h.Lo))
}

func fromBig(v *big.Int) aggregate.HashKey {
	lo := new(big.Int).And(v, new(big.Int).SetUint64(^uint64(0)))
	return aggregate.HashKey{Hi: new(big.Int).Rsh(v, 64).Uint64(), Lo: lo.Uint64()}
}

// Reshard closes the open shards and opens n even ones named prefix + index
// (as UpdateShardCount does, at once).
func (k *Kinesis) Reshard(n int, prefix string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = append(k.closed, k.shards...)
	k.shards = EvenShards(n, prefix)
}

// SetShards replaces the open shards (they may leave gaps, as in the middle
// of a reshard).
func (k *Kinesis) SetShards(shards []aggregate.Shard) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.shards = append([]aggregate.Shard(nil), shards...)
}

// Shards returns the open shards.
func (k *Kinesis) Shards() []aggregate.Shard {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]aggregate.Shard(nil), k.shards...)
}

// SetListPageSize makes ListShards answer n shards a page (0: all).
func (k *Kinesis) SetListPageSize(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pageSize = n
}

// FailListShards makes the next n ListShards calls fail (throttled).
func (k *Kinesis) FailListShards(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.listErrors = n
}

// SetStreamMissing makes every call answer ResourceNotFoundException, as
// for a stream that does not exist (or exists no more), until it is unset.
func (k *Kinesis) SetStreamMissing(missing bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.missing = missing
}

// Throttle refuses, with ProvisionedThroughputExceededException, the
// entries of a shard above perSecond records a second on clock (a token
// bucket per shard, full at first). A nil clock stops throttling.
func (k *Kinesis) Throttle(clock Clock, perSecond float64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.clock, k.limit = clock, perSecond
	k.buckets = map[string]*bucket{}
}

// FailEntries sets a function that returns an error code for a PutRecords
// entry to fail (its data as sent: an aggregate is framed), or "".
func (k *Kinesis) FailEntries(fn func(pk string, data []byte) string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failEntry = fn
}

// AnswerShardID sets a function that returns the shard ID answered for an
// entry stored on shard real (the records are stored on real still).
func (k *Kinesis) AnswerShardID(fn func(real string) string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.shardID = fn
}

// FailPuts sets the fates of the next PutRecords calls, one each: an error
// answer, or a zero APIError to let that call pass.
func (k *Kinesis) FailPuts(errs ...APIError) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failPuts = append([]APIError(nil), errs...)
}

// CutCBOR cuts the CBOR answers to n bytes (kinesalite cuts them at 16
// KiB); 0 does not.
func (k *Kinesis) CutCBOR(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cutCBOR = n
}

// CheckSignatures makes every request's SigV4 signature checked against
// these secrets, by access key ID: a request signed wrongly (its payload
// hash included) or by an unknown key is refused with 403
// InvalidSignatureException and listed in Violations. nil stops checking.
func (k *Kinesis) CheckSignatures(secrets map[string]string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.secrets = secrets
}

// OnPut sets a function called after each PutRecords with its number of
// entries (outside the fake's lock: it may call Reshard).
func (k *Kinesis) OnPut(fn func(entries int)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.onPut = fn
}

// Stats returns the counts so far.
func (k *Kinesis) Stats() KinesisStats {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stats
}

// Violations lists the sub-records a KCL would have dropped (outside the
// range of their aggregate's shard), the records that did not decode or
// whose MD5 did not match, and the requests that broke the protocol.
func (k *Kinesis) Violations() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.violations...)
}

// AccessKeyIDs returns the access key ID of every request's signature, in
// order.
func (k *Kinesis) AccessKeyIDs() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.akids...)
}

// Records returns the Kinesis records stored (KeepData), per shard ID, in
// the order they were put.
func (k *Kinesis) Records() map[string][]Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string][]Record, len(k.records))
	for id, rs := range k.records {
		out[id] = append([]Record(nil), rs...)
	}
	return out
}

// UserData returns the data of every user record stored (KeepData), per
// shard ID.
func (k *Kinesis) UserData() map[string][]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string][]string, len(k.data))
	for id, d := range k.data {
		out[id] = append([]string(nil), d...)
	}
	return out
}

// bodies are reused request buffers: a benchmark's fake reads gigabytes.
var bodies sync.Pool // *[]byte

// maxKeptBody bounds the request buffers kept.
const maxKeptBody = 8 << 20

// ServeHTTP answers the SDK's JSON 1.1 requests, and their CBOR form
// (Content-Type application/x-amz-cbor-1.1) in CBOR.
func (k *Kinesis) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cbor := isCBOR(r)
	bp, _ := bodies.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer func() {
		if cap(*bp) <= maxKeptBody {
			bodies.Put(bp)
		}
	}()
	body, err := readBody(r, (*bp)[:0])
	*bp = body
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	k.mu.Lock()
	var resp any
	status := http.StatusOK
	var onPut func(int)
	n := 0
	if cbor {
		k.stats.CBORRequests++
	}
	cut := k.cutCBOR
	akid, serr := k.checkSignature(r, body)
	if akid != "" {
		k.akids = append(k.akids, akid)
	}
	switch {
	case serr != nil:
		k.violations = append(k.violations, fmt.Sprintf("%s: %v", op, serr))
		status, resp = http.StatusForbidden, errorBody("InvalidSignatureException", serr.Error())
	case k.missing:
		switch op {
		case "ListShards":
			k.stats.ListShards++
		case "PutRecords":
			k.stats.PutRecords++
		}
		status, resp = http.StatusBadRequest, errorBody("ResourceNotFoundException", "fake: stream not found")
	case op == "ListShards":
		k.stats.ListShards++
		if k.listErrors > 0 {
			k.listErrors--
			status, resp = http.StatusBadRequest, errorBody("LimitExceededException", "fake: rate exceeded")
			break
		}
		resp, err = k.listShards(body, cbor)
		if err != nil {
			status, resp = http.StatusBadRequest, errorBody("InvalidArgumentException", err.Error())
		}
	case op == "DescribeStreamSummary":
		resp = map[string]any{"StreamDescriptionSummary": map[string]any{"StreamName": "s", "StreamStatus": "ACTIVE", "OpenShardCount": len(k.shards)}}
	case op == "PutRecords":
		k.stats.PutRecords++
		if len(k.failPuts) > 0 {
			e := k.failPuts[0]
			k.failPuts = k.failPuts[1:]
			if e.Status != 0 {
				status, resp = e.Status, errorBody(e.Code, "fake "+e.Code)
				break
			}
		}
		resp, n, err = k.putRecords(body, cbor)
		if err != nil {
			status, resp = http.StatusBadRequest, errorBody("ValidationException", err.Error())
		}
		onPut = k.onPut
	default:
		status, resp = http.StatusBadRequest, errorBody("UnknownOperationException", op)
	}
	k.mu.Unlock()
	if cbor {
		writeCBOR(w, status, resp, cut)
	} else {
		writeJSON(w, status, resp)
	}
	if onPut != nil {
		onPut(n)
	}
}

func errorBody(code, msg string) map[string]any {
	return map[string]any{"__type": code, "message": msg}
}

// readBody reads r's body into dst, grown once to its Content-Length.
func readBody(r *http.Request, dst []byte) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= 64<<20 && int64(cap(dst)) < n {
		dst = make([]byte, 0, n+1) // +1: room to see the EOF without growing
	}
	buf := bytes.NewBuffer(dst)
	_, err := buf.ReadFrom(r.Body)
	return buf.Bytes(), err
}

// isCBOR says r is in the protocol's CBOR form.
func isCBOR(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == awscbor.ContentType
}

func writeCBOR(w http.ResponseWriter, status int, v any, cut int) {
	b, err := awscbor.Append(nil, v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if cut > 0 && len(b) > cut {
		b = b[:cut]
	}
	w.Header().Set("Content-Type", awscbor.ContentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (k *Kinesis) listShards(body []byte, cbor bool) (any, error) {
	var in struct{ NextToken, StreamName string }
	if cbor {
		v, _, err := awscbor.Decode(body)
		if err != nil {
			return nil, err
		}
		m, _ := v.(map[string]any)
		in.NextToken, _ = m["NextToken"].(string)
		in.StreamName, _ = m["StreamName"].(string)
	} else if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return nil, err
		}
	}
	shard := func(s aggregate.Shard, closed bool) map[string]any {
		seq := map[string]any{"StartingSequenceNumber": "1"}
		if closed {
			seq["EndingSequenceNumber"] = "2"
		}
		return map[string]any{
			"ShardId":             s.ID,
			"HashKeyRange":        map[string]any{"StartingHashKey": s.Start.String(), "EndingHashKey": s.End.String()},
			"SequenceNumberRange": seq,
		}
	}
	var all []map[string]any
	for _, s := range k.closed {
		all = append(all, shard(s, true))
	}
	for _, s := range k.shards {
		all = append(all, shard(s, false))
	}
	start := 0
	if in.NextToken != "" {
		if in.StreamName != "" {
			// ListShards refuses both: the token names the stream.
			k.violations = append(k.violations, "ListShards with both NextToken and StreamName")
			return nil, fmt.Errorf("NextToken and StreamName cannot be provided together")
		}
		if _, err := fmt.Sscanf(in.NextToken, "page-%d", &start); err != nil || start < 0 || start > len(all) {
			return nil, fmt.Errorf("bad NextToken %q", in.NextToken)
		}
	}
	end := len(all)
	if k.pageSize > 0 {
		end = min(start+k.pageSize, len(all))
	}
	out := map[string]any{"Shards": all[start:end]}
	if end < len(all) {
		out["NextToken"] = fmt.Sprintf("page-%d", end)
	}
	return out, nil
}

// allow takes a token of shard's bucket, if throttling.
func (k *Kinesis) allow(shard string) bool {
	if k.clock == nil {
		return true
	}
	now := k.clock.Now()
	b := k.buckets[shard]
	if b == nil {
		b = &bucket{tokens: k.limit, last: now}
		k.buckets[shard] = b
	}
	b.tokens = min(k.limit, b.tokens+now.Sub(b.last).Seconds()*k.limit)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

type putEntry struct {
	Data            []byte
	PartitionKey    string
	ExplicitHashKey string
}

func (k *Kinesis) putRecords(body []byte, cbor bool) (any, int, error) {
	var entries []putEntry
	var err error
	if cbor {
		var ces []awscbor.PutEntry
		_, ces, err = awscbor.DecodePutRecordsRequest(body)
		entries = make([]putEntry, len(ces))
		for i, e := range ces {
			entries[i] = putEntry(e)
		}
	} else {
		entries, err = parsePutRecords(body)
	}
	if err != nil {
		return nil, 0, err
	}
	results := make([]map[string]any, 0, len(entries))
	failed := 0
	hashes := map[string]aggregate.HashKey{} // of the partition keys of this request
	for _, e := range entries {
		if err := aggregate.ValidatePartitionKey(e.PartitionKey); err != nil {
			return nil, 0, err
		}
		h, err := hashOf(e.PartitionKey, e.ExplicitHashKey)
		if err != nil {
			return nil, 0, err
		}
		var shard aggregate.Shard
		found := false
		for _, s := range k.shards {
			if s.Contains(h) {
				shard, found = s, true
			}
		}
		code := ""
		switch {
		case !found:
			// A gap in the open shards (mid-reshard): the entry fails.
			code = "InternalFailure"
		case k.failEntry != nil:
			if code = k.failEntry(e.PartitionKey, e.Data); code != "" {
				k.stats.Failed++
			}
		}
		if code == "" && !k.allow(shard.ID) {
			code = "ProvisionedThroughputExceededException"
			k.stats.Throttled++
		}
		if code != "" {
			failed++
			results = append(results, map[string]any{"ErrorCode": code, "ErrorMessage": "fake " + code + " on " + shard.ID})
			continue
		}
		users := k.check(e, shard, hashes)
		size := int64(len(e.Data) + len(e.PartitionKey))
		k.stats.Records++
		k.stats.UserRecords += int64(users)
		k.stats.Bytes += size
		k.stats.PayloadUnits += (size + PayloadUnit - 1) / PayloadUnit
		if k.KeepData {
			k.records[shard.ID] = append(k.records[shard.ID], Record{e.PartitionKey, e.ExplicitHashKey, bytes.Clone(e.Data)})
		}
		k.seq++
		id := shard.ID
		if k.shardID != nil {
			id = k.shardID(id)
		}
		results = append(results, map[string]any{"SequenceNumber": fmt.Sprint(k.seq), "ShardId": id})
	}
	return map[string]any{"FailedRecordCount": failed, "Records": results}, len(entries), nil
}

// check is the KCL's check of a record read from shard, on every
// sub-record of an aggregate (its MD5 included): it notes violations, keeps
// the user records' data (KeepData) and returns how many there are.
func (k *Kinesis) check(e putEntry, shard aggregate.Shard, hashes map[string]aggregate.HashKey) int {
	a := aggregate.Aggregate{PartitionKey: e.PartitionKey, ExplicitHashKey: e.ExplicitHashKey, Body: e.Data, Count: 1}
	if aggregate.IsAggregated(e.Data) {
		if len(e.Data) < 4+md5.Size {
			k.violations = append(k.violations, "a truncated aggregate")
			return 0
		}
		body, sum := e.Data[4:len(e.Data)-md5.Size], e.Data[len(e.Data)-md5.Size:]
		if got := md5.Sum(body); !bytes.Equal(got[:], sum) {
			k.violations = append(k.violations, "an aggregate whose MD5 does not match")
			return 0
		}
		a.Aggregated, a.Body, a.Count = true, body, 0
	}
	users := 0
	err := aggregate.ForEach(&a, func(pk, ehk, data []byte) error {
		users++
		if !a.Aggregated {
			// A plain record lands where Kinesis routes it: nothing to
			// check (the KCL does not).
		} else {
			var uh aggregate.HashKey
			var err error
			if len(ehk) > 0 {
				uh, err = aggregate.ParseHashKey(string(ehk))
			} else if v, ok := hashes[string(pk)]; ok {
				uh = v
			} else {
				uh = aggregate.PartitionKeyHash(string(pk))
				hashes[string(pk)] = uh
			}
			if err != nil || !shard.Contains(uh) {
				k.violations = append(k.violations, fmt.Sprintf("%.40q outside %s", data, shard.ID))
			}
		}
		if k.KeepData {
			k.data[shard.ID] = append(k.data[shard.ID], string(data))
		}
		return nil
	})
	if err != nil {
		k.violations = append(k.violations, err.Error())
	}
	return users
}

// parsePutRecords reads the entries of a PutRecords body. The SDK's bodies
// are compact JSON whose data strings hold no escapes: they are read by a
// scanner that base64-decodes the data in place (encoding/json reads 5 MiB
// of base64 several times slower, and the benchmark shares the agent's
// cores). Anything else is read by encoding/json.
func parsePutRecords(body []byte) ([]putEntry, error) {
	if entries, ok := scanPutRecords(body); ok {
		return entries, nil
	}
	var in struct {
		StreamName string
		Records    []putEntry
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, err
	}
	return in.Records, nil
}

func scanPutRecords(b []byte) ([]putEntry, bool) {
	const head = `{"Records":[`
	if !bytes.HasPrefix(b, []byte(head)) {
		return nil, false
	}
	b = b[len(head):]
	var entries []putEntry
	for len(b) > 0 && b[0] == '{' {
		b = b[1:]
		var e putEntry
		for {
			// "Key":"value"
			if len(b) == 0 || b[0] != '"' {
				return nil, false
			}
			end := bytes.IndexByte(b[1:], '"')
			if end < 0 || len(b) < end+4 || b[end+2] != ':' || b[end+3] != '"' {
				return nil, false
			}
			key := string(b[1 : end+1])
			b = b[end+3:] // at the value's opening quote
			vend := 1
			for vend < len(b) && b[vend] != '"' {
				if b[vend] == '\\' {
					vend++
				}
				vend++
			}
			if vend >= len(b) {
				return nil, false
			}
			raw := b[:vend+1]
			b = b[vend+1:]
			switch key {
			case "Data":
				data := make([]byte, base64.StdEncoding.DecodedLen(len(raw)-2))
				n, err := base64.StdEncoding.Decode(data, raw[1:len(raw)-1])
				if err != nil {
					return nil, false
				}
				e.Data = data[:n]
			case "PartitionKey", "ExplicitHashKey":
				var v string
				if err := json.Unmarshal(raw, &v); err != nil {
					return nil, false
				}
				if key == "PartitionKey" {
					e.PartitionKey = v
				} else {
					e.ExplicitHashKey = v
				}
			default:
				return nil, false
			}
			if len(b) > 0 && b[0] == ',' {
				b = b[1:]
				continue
			}
			if len(b) > 0 && b[0] == '}' {
				b = b[1:]
				break
			}
			return nil, false
		}
		entries = append(entries, e)
		if len(b) > 0 && b[0] == ',' {
			b = b[1:]
		}
	}
	if len(b) == 0 || b[0] != ']' {
		return nil, false
	}
	return entries, true
}

func hashOf(pk, ehk string) (aggregate.HashKey, error) {
	if ehk != "" {
		return aggregate.ParseHashKey(ehk)
	}
	return aggregate.PartitionKeyHash(pk), nil
}
