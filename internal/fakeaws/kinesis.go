// Package fakeaws is an in-process Kinesis Data Streams and Firehose
// speaking the JSON 1.1 protocol the AWS SDK uses, for the agent's tests and
// benchmarks where kinesalite does not fit (reshards at a chosen moment,
// failures of chosen calls, speed). Like the KCL, the fake Kinesis checks
// that every sub-record of an aggregate lies in the hash key range of the
// shard the aggregate lands on. Tests and benchmarks only; it is never part
// of the agent's binary.
package fakeaws

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/awscbor"
)

// Kinesis is a fake Kinesis Data Streams (ListShards, PutRecords,
// DescribeStreamSummary) of one stream, an http.Handler. Safe for
// concurrent use.
type Kinesis struct {
	// KeepData keeps the data of every user record (see UserData); off,
	// records are only counted and checked (benchmarks).
	KeepData bool

	mu     sync.Mutex
	shards []aggregate.Shard // open
	closed []aggregate.Shard
	// listErrors > 0 fails as many next ListShards calls with
	// LimitExceededException.
	listErrors int
	onPut      func(n int) // called (unlocked) after each PutRecords, with its entries

	stats      KinesisStats
	data       map[string][]string // user records' data per shard ID
	violations []string
	seq        int64
}

// KinesisStats counts what the fake Kinesis received.
type KinesisStats struct {
	ListShards   int   // calls
	PutRecords   int   // calls
	Records      int64 // Kinesis records stored
	UserRecords  int64 // user records in them (deaggregated)
	Bytes        int64 // data plus partition keys
	PayloadUnits int64 // 25 KB units per record, rounded up (how PUT payload units are billed)
}

// PayloadUnit is the size of a PUT payload unit.
const PayloadUnit = 25 * 1024

// NewKinesis returns a fake stream of n shards splitting the hash key space
// evenly, as CreateStream does.
func NewKinesis(n int) *Kinesis {
	return &Kinesis{shards: EvenShards(n, "shardId-"), data: map[string][]string{}}
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

// Shards returns the open shards.
func (k *Kinesis) Shards() []aggregate.Shard {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]aggregate.Shard(nil), k.shards...)
}

// FailListShards makes the next n ListShards calls fail (throttled).
func (k *Kinesis) FailListShards(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.listErrors = n
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
// range of their aggregate's shard) and the records that did not decode.
func (k *Kinesis) Violations() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.violations...)
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

// ServeHTTP answers the SDK's JSON 1.1 requests, and their CBOR form
// (Content-Type application/x-amz-cbor-1.1) in CBOR.
func (k *Kinesis) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cbor := isCBOR(r)
	body, err := io.ReadAll(r.Body)
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
	switch op {
	case "ListShards":
		k.stats.ListShards++
		if k.listErrors > 0 {
			k.listErrors--
			status, resp = http.StatusBadRequest, map[string]any{"__type": "LimitExceededException", "message": "fake: rate exceeded"}
			break
		}
		resp = k.listShards()
	case "DescribeStreamSummary":
		resp = map[string]any{"StreamDescriptionSummary": map[string]any{"StreamName": "s", "StreamStatus": "ACTIVE", "OpenShardCount": len(k.shards)}}
	case "PutRecords":
		k.stats.PutRecords++
		resp, n, err = k.putRecords(body, cbor)
		if err != nil {
			status, resp = http.StatusBadRequest, map[string]any{"__type": "ValidationException", "message": err.Error()}
		}
		onPut = k.onPut
	default:
		status, resp = http.StatusBadRequest, map[string]any{"__type": "UnknownOperationException", "message": op}
	}
	k.mu.Unlock()
	if cbor {
		writeCBOR(w, status, resp)
	} else {
		writeJSON(w, status, resp)
	}
	if onPut != nil {
		onPut(n)
	}
}

// isCBOR says r is in the protocol's CBOR form.
func isCBOR(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == awscbor.ContentType
}

func writeCBOR(w http.ResponseWriter, status int, v any) {
	b, err := awscbor.Append(nil, v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
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

func (k *Kinesis) listShards() any {
	var all []map[string]any
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
	for _, s := range k.closed {
		all = append(all, shard(s, true))
	}
	for _, s := range k.shards {
		all = append(all, shard(s, false))
	}
	return map[string]any{"Shards": all}
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
		for _, e := range ces {
			entries = append(entries, putEntry(e))
		}
	} else {
		entries, err = parsePutRecords(body)
	}
	if err != nil {
		return nil, 0, err
	}
	results := make([]map[string]any, 0, len(entries))
	hashes := map[string]aggregate.HashKey{} // of the partition keys of this request
	for _, e := range entries {
		h, err := hashOf(e.PartitionKey, e.ExplicitHashKey)
		if err != nil {
			return nil, 0, err
		}
		var shard aggregate.Shard
		for _, s := range k.shards {
			if s.Contains(h) {
				shard = s
			}
		}
		// The KCL's check, on every sub-record (MD5 included).
		a := aggregate.Aggregate{PartitionKey: e.PartitionKey, ExplicitHashKey: e.ExplicitHashKey, Body: e.Data}
		if aggregate.IsAggregated(e.Data) {
			if len(e.Data) < 20 {
				k.violations = append(k.violations, "a truncated aggregate")
				continue
			}
			body, sum := e.Data[4:len(e.Data)-md5.Size], e.Data[len(e.Data)-md5.Size:]
			if got := md5.Sum(body); !bytes.Equal(got[:], sum) {
				k.violations = append(k.violations, "an aggregate whose MD5 does not match")
				continue
			}
			a.Aggregated, a.Body = true, body
		}
		users := 0
		err = aggregate.ForEach(&a, func(pk, ehk, data []byte) error {
			users++
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
			if k.KeepData {
				k.data[shard.ID] = append(k.data[shard.ID], string(data))
			}
			return nil
		})
		if err != nil {
			k.violations = append(k.violations, err.Error())
		}
		size := int64(len(e.Data) + len(e.PartitionKey))
		k.stats.Records++
		k.stats.UserRecords += int64(users)
		k.stats.Bytes += size
		k.stats.PayloadUnits += (size + PayloadUnit - 1) / PayloadUnit
		k.seq++
		results = append(results, map[string]any{"SequenceNumber": fmt.Sprint(k.seq), "ShardId": shard.ID})
	}
	return map[string]any{"FailedRecordCount": 0, "Records": results}, len(entries), nil
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
