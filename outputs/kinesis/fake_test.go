package kinesis

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/awscbor"
)

// fakeKinesis is an in-process Kinesis speaking the JSON 1.1 protocol the
// SDK uses (ListShards, PutRecords, DescribeStreamSummary), for what
// kinesalite cannot do: throttle shards above a rate, fail chosen entries,
// answer shard IDs of the test's choosing and show the request signatures.
//
// Like the KCL, it checks that every sub-record of an aggregate lies in the
// range of the shard the aggregate lands on, and counts the violations.
type fakeKinesis struct {
	mu     sync.Mutex
	shards []aggregate.Shard // open shards
	closed []aggregate.Shard // listed with an ending sequence number
	// pageSize > 0 paginates ListShards.
	pageSize int

	// Per-shard throttling: a token bucket of limit records per second on
	// clock (nil: no throttling).
	clock   *fakeClock
	limit   float64
	buckets map[string]*fakeBucket

	// failCode, when set, returns an error code for an entry (or "").
	failCode func(pk string, data []byte) string
	// shardID, when set, overrides the shard ID answered for an entry.
	shardID func(real string) string
	// whole, when set, fails the next PutRecords whole: status and __type.
	whole []fakeError

	listCalls int
	putCalls  int
	cborCalls int // requests in CBOR
	// cutCBOR > 0 cuts CBOR answers to that many bytes (kinesalite cuts
	// them at 16 KiB).
	cutCBOR    int
	akids      []string // the access key ID of every request's signature
	stored     map[string][]storedRecord
	violations []string
	throttled  int
	seq        int
}

type fakeError struct {
	status int
	code   string
}

type fakeBucket struct {
	tokens float64
	last   time.Time
}

type storedRecord struct {
	PartitionKey, ExplicitHashKey string
	Data                          []byte
}

func newFakeKinesis(t testing.TB, shards int) (*fakeKinesis, *httptest.Server) {
	f := &fakeKinesis{shards: evenShards(shards), buckets: map[string]*fakeBucket{}, stored: map[string][]storedRecord{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// evenShards splits the hash key space in n, as CreateStream does.
func evenShards(n int) []aggregate.Shard {
	shards := make([]aggregate.Shard, n)
	for i := range n {
		shards[i] = aggregate.Shard{ID: fmt.Sprintf("shardId-%012d", i), Start: splitPoint(i, n), End: aggregate.MaxHashKey}
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

// reshard replaces the open shards by n even ones, closing the old ones.
func (f *fakeKinesis) reshard(n int, prefix string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, f.shards...)
	f.shards = evenShards(n)
	for i := range f.shards {
		f.shards[i].ID = fmt.Sprintf("%s-%d", prefix, i)
	}
}

var credentialRE = regexp.MustCompile(`Credential=([^/]+)/`)

func (f *fakeKinesis) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		f.akids = append(f.akids, m[1])
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	cbor := mt == awscbor.ContentType
	if cbor {
		f.cborCalls++
	}
	reply := func(w http.ResponseWriter, status int, v any) {
		if cbor {
			writeCBOR(w, status, v, f.cutCBOR)
		} else {
			writeJSON(w, status, v)
		}
	}
	var resp any
	switch op {
	case "ListShards":
		resp = f.listShards(body)
	case "DescribeStreamSummary":
		resp = map[string]any{"StreamDescriptionSummary": map[string]any{"StreamName": "s", "StreamStatus": "ACTIVE", "OpenShardCount": len(f.shards)}}
	case "PutRecords":
		f.putCalls++
		if len(f.whole) > 0 {
			e := f.whole[0]
			f.whole = f.whole[1:]
			if e.status != 0 { // 0: this request passes
				reply(w, e.status, map[string]any{"__type": e.code, "message": "fake " + e.code})
				return
			}
		}
		resp = f.putRecords(body, cbor)
	default:
		reply(w, 400, map[string]any{"__type": "UnknownOperationException", "message": op})
		return
	}
	reply(w, 200, resp)
}

func writeCBOR(w http.ResponseWriter, status int, v any, cut int) {
	b, err := awscbor.Append(nil, v)
	if err != nil {
		panic(err)
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

func jsonShard(s aggregate.Shard, closed bool) map[string]any {
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

func (f *fakeKinesis) listShards(body []byte) any {
	f.listCalls++
	var in struct{ NextToken, StreamName string }
	_ = json.Unmarshal(body, &in)
	var all []map[string]any
	for _, s := range f.closed {
		all = append(all, jsonShard(s, true))
	}
	for _, s := range f.shards {
		all = append(all, jsonShard(s, false))
	}
	start := 0
	if in.NextToken != "" {
		if in.StreamName != "" {
			f.violations = append(f.violations, "ListShards with both NextToken and StreamName")
		}
		fmt.Sscanf(in.NextToken, "page-%d", &start)
	}
	end := len(all)
	if f.pageSize > 0 {
		end = min(start+f.pageSize, len(all))
	}
	out := map[string]any{"Shards": all[start:end]}
	if end < len(all) {
		out["NextToken"] = fmt.Sprintf("page-%d", end)
	}
	return out
}

func (f *fakeKinesis) lookup(h aggregate.HashKey) aggregate.Shard {
	for _, s := range f.shards {
		if s.Contains(h) {
			return s
		}
	}
	panic("no shard")
}

func hashOf(pk, ehk string) aggregate.HashKey {
	if ehk != "" {
		h, err := aggregate.ParseHashKey(ehk)
		if err != nil {
			panic(err)
		}
		return h
	}
	return aggregate.PartitionKeyHash(pk)
}

func (f *fakeKinesis) allow(shard string) bool {
	if f.clock == nil {
		return true
	}
	now := f.clock.Now()
	b := f.buckets[shard]
	if b == nil {
		b = &fakeBucket{tokens: f.limit, last: now}
		f.buckets[shard] = b
	}
	b.tokens = min(f.limit, b.tokens+now.Sub(b.last).Seconds()*f.limit)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (f *fakeKinesis) putRecords(body []byte, cbor bool) any {
	var in struct {
		StreamName string
		Records    []struct {
			Data            string
			PartitionKey    string
			ExplicitHashKey string
		}
	}
	var raw [][]byte // the records' data, decoded
	if cbor {
		stream, entries, err := awscbor.DecodePutRecordsRequest(body)
		if err != nil {
			panic(err)
		}
		in.StreamName = stream
		for _, e := range entries {
			in.Records = append(in.Records, struct {
				Data            string
				PartitionKey    string
				ExplicitHashKey string
			}{"", e.PartitionKey, e.ExplicitHashKey})
			raw = append(raw, e.Data)
		}
	} else if err := json.Unmarshal(body, &in); err != nil {
		panic(err)
	}
	var results []map[string]any
	failed := 0
	for i, e := range in.Records {
		var data []byte
		var err error
		if cbor {
			data = raw[i]
		} else if data, err = base64.StdEncoding.DecodeString(e.Data); err != nil {
			panic(err)
		}
		shard := f.lookup(hashOf(e.PartitionKey, e.ExplicitHashKey))
		code := ""
		if f.failCode != nil {
			code = f.failCode(e.PartitionKey, data)
		}
		if code == "" && !f.allow(shard.ID) {
			code = "ProvisionedThroughputExceededException"
			f.throttled++
		}
		if code != "" {
			failed++
			results = append(results, map[string]any{"ErrorCode": code, "ErrorMessage": "fake " + code + " on " + shard.ID})
			continue
		}
		// The KCL's check.
		users, err := aggregate.DecodeKinesisRecord(e.PartitionKey, e.ExplicitHashKey, data)
		if err != nil {
			f.violations = append(f.violations, err.Error())
		}
		for _, u := range users {
			if !shard.Contains(hashOf(u.PartitionKey, u.ExplicitHashKey)) {
				f.violations = append(f.violations, fmt.Sprintf("%q outside %s", u.Data, shard.ID))
			}
		}
		f.stored[shard.ID] = append(f.stored[shard.ID], storedRecord{e.PartitionKey, e.ExplicitHashKey, data})
		f.seq++
		id := shard.ID
		if f.shardID != nil {
			id = f.shardID(id)
		}
		results = append(results, map[string]any{"SequenceNumber": fmt.Sprint(f.seq), "ShardId": id})
	}
	return map[string]any{"FailedRecordCount": failed, "Records": results}
}

// userData returns the data of every user record stored, deaggregated.
func (f *fakeKinesis) userData(t testing.TB) []string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, recs := range f.stored {
		for _, r := range recs {
			users, err := aggregate.DecodeKinesisRecord(r.PartitionKey, r.ExplicitHashKey, r.Data)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range users {
				out = append(out, string(u.Data))
			}
		}
	}
	return out
}

func (f *fakeKinesis) counts() (list, put int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listCalls, f.putCalls
}

// fakeClock is a clock that only sleeps move: the output's and the fake's
// throttling share it, so rates are exact whatever the machine's load.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newShardMapForTest returns an even map of n shards.
func newShardMapForTest(n int) (*aggregate.ShardMap, error) {
	return aggregate.NewShardMap(evenShards(n))
}
