package aggregate

import (
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// t0 is the tests' clock origin.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// emitted is a Kinesis record emitted by a Builder, copied out of its buffers.
type emitted struct {
	Group int
	Agg   Aggregate
	Data  []byte // AppendKinesisData
}

// collector gathers what a Builder emits.
type collector struct {
	out []emitted
}

func (c *collector) emit(group int, a *Aggregate) error {
	cp := *a
	cp.Body = append([]byte(nil), a.Body...)
	c.out = append(c.out, emitted{Group: group, Agg: cp, Data: a.AppendKinesisData([]byte{})})
	return nil
}

// allShards is a shard map of one shard covering every hash key.
func allShards(t testing.TB) *ShardMap {
	t.Helper()
	m, err := NewShardMap([]Shard{{ID: "shardId-000000000000", Start: HashKey{}, End: MaxHashKey}})
	require.NoError(t, err)
	return m
}

// evenShards splits the hash key space into n shards of equal size, as
// CreateStream does.
func evenShards(t testing.TB, n int) *ShardMap {
	t.Helper()
	shards := make([]Shard, n)
	for i := range n {
		shards[i] = Shard{ID: shardID(i), Start: splitPoint(i, n), End: HashKey{}}
		if i == n-1 {
			shards[i].End = MaxHashKey
		} else {
			shards[i].End = dec(splitPoint(i+1, n))
		}
	}
	m, err := NewShardMap(shards)
	require.NoError(t, err)
	return m
}

func shardID(i int) string {
	const digits = "0123456789"
	id := []byte("shardId-000000000000")
	for j := len(id) - 1; i > 0; j-- {
		id[j] = digits[i%10]
		i /= 10
	}
	return string(id)
}

// splitPoint returns floor(i * 2^128 / n).
func splitPoint(i, n int) HashKey {
	v := new(big.Int).Lsh(big.NewInt(int64(i)), 128)
	return fromBig(v.Div(v, big.NewInt(int64(n))))
}

func dec(h HashKey) HashKey {
	return fromBig(new(big.Int).Sub(toBig(h), big.NewInt(1)))
}

// toBig and fromBig convert with math/big, independently of the package.
func toBig(h HashKey) *big.Int {
	v := new(big.Int).SetUint64(h.Hi)
	v.Lsh(v, 64)
	return v.Or(v, new(big.Int).SetUint64(h.Lo))
}

func fromBig(v *big.Int) HashKey {
	lo := new(big.Int).And(v, new(big.Int).SetUint64(^uint64(0)))
	hi := new(big.Int).Rsh(v, 64)
	return HashKey{Hi: hi.Uint64(), Lo: lo.Uint64()}
}

// hashOf returns the hash key Kinesis routes r by.
func hashOf(t testing.TB, r Record) HashKey {
	t.Helper()
	if r.ExplicitHashKey != "" {
		h, err := ParseHashKey(r.ExplicitHashKey)
		require.NoError(t, err)
		return h
	}
	return PartitionKeyHash(r.PartitionKey)
}

// pb builds protobuf messages by hand for decoder tests.
type pb []byte

func (m pb) bytes(num protowire.Number, v []byte) pb {
	m = protowire.AppendTag(m, num, protowire.BytesType)
	return protowire.AppendBytes(m, v)
}

func (m pb) str(num protowire.Number, v string) pb { return m.bytes(num, []byte(v)) }

func (m pb) varint(num protowire.Number, v uint64) pb {
	m = protowire.AppendTag(m, num, protowire.VarintType)
	return protowire.AppendVarint(m, v)
}

// wire frames an AggregatedRecord message as Kinesis record data.
func wire(body []byte) []byte {
	a := Aggregate{Aggregated: true, Body: body}
	return a.AppendKinesisData(nil)
}
