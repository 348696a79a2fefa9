package kinesis

import (
	"math/big"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/fakeaws"
)

// The tests' Kinesis is internal/fakeaws's, for what kinesalite cannot do:
// throttle shards above a rate, fail chosen entries and calls, answer shard
// IDs of the test's choosing, paginate ListShards, check the request
// signatures. Like the KCL, it checks that every sub-record of an aggregate
// lies in the range of the shard the aggregate lands on.

// testSecrets are the secrets of every access key the tests sign with: the
// fake checks every request's signature (its payload hash included).
var testSecrets = map[string]string{
	envAccessKey:        "secret-from-environment",
	"AKIDSETBYTHISTEST": "another-secret",
	"AKIDFROMPROFILE":   "s",
	"ASIAASSUMED1":      "assumed-secret",
	"ASIAASSUMED2":      "assumed-secret",
	"ASIAASSUMED3":      "assumed-secret",
}

// newFakeKinesis serves a fake stream of n even shards, keeping what it
// receives, checking signatures.
func newFakeKinesis(t testing.TB, shards int) (*fakeaws.Kinesis, *httptest.Server) {
	f := fakeaws.NewKinesis(shards)
	f.KeepData = true
	f.CheckSignatures(testSecrets)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// evenShards splits the hash key space in n, as CreateStream does.
func evenShards(n int) []aggregate.Shard { return fakeaws.EvenShards(n, "shardId-") }

// userData returns the data of every user record f stored, deaggregated.
func userData(f *fakeaws.Kinesis) []string {
	var out []string
	for _, d := range f.UserData() {
		out = append(out, d...)
	}
	return out
}

// counts returns f's ListShards and PutRecords calls.
func counts(f *fakeaws.Kinesis) (list, put int) {
	st := f.Stats()
	return st.ListShards, st.PutRecords
}

var credentialRE = regexp.MustCompile(`Credential=([^/]+)/`)

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

func toBig(h aggregate.HashKey) *big.Int {
	v := new(big.Int).SetUint64(h.Hi)
	v.Lsh(v, 64)
	return v.Or(v, new(big.Int).SetUint64(h.Lo))
}

func fromBig(v *big.Int) aggregate.HashKey {
	lo := new(big.Int).And(v, new(big.Int).SetUint64(^uint64(0)))
	return aggregate.HashKey{Hi: new(big.Int).Rsh(v, 64).Uint64(), Lo: lo.Uint64()}
}

// hashOf is the hash key Kinesis routes a record with these keys by.
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
