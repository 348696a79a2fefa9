package aggregate

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// randomRecord returns a user record with the shapes that break encoders:
// empty and binary data, Unicode keys up to 256 characters, explicit hash
// keys at the ends of the key space and at shard boundaries.
func randomRecord(r *rand.Rand, m *ShardMap, maxData int) Record {
	var rec Record
	switch r.IntN(6) {
	case 0:
		rec.PartitionKey = fmt.Sprint("hot-", r.IntN(4)) // repeated keys
	case 1:
		rec.PartitionKey = randomUnicode(r, 256)
	default:
		rec.PartitionKey = randomUnicode(r, 1+r.IntN(40))
	}
	switch r.IntN(10) {
	case 0:
		rec.ExplicitHashKey = "0"
	case 1:
		rec.ExplicitHashKey = MaxHashKey.String()
	case 2:
		if m != nil {
			s := m.Shard(r.IntN(m.Len()))
			rec.ExplicitHashKey = []HashKey{s.Start, s.End}[r.IntN(2)].String()
		}
	case 3:
		rec.ExplicitHashKey = HashKey{Hi: r.Uint64(), Lo: r.Uint64()}.String()
	}
	var n int
	switch r.IntN(32) {
	case 0, 1, 2, 3:
		n = 0
	case 4: // from nothing to three times the aggregate size limit
		n = r.IntN(maxData + 1)
	default:
		n = r.IntN(300)
	}
	rec.Data = make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := i; j < min(i+8, n); j++ {
			rec.Data[j] = byte(v)
			v >>= 8
		}
	}
	return rec
}

// randomUnicode returns n random characters, from ASCII to 4-byte UTF-8.
func randomUnicode(r *rand.Rand, n int) string {
	ranges := [][2]rune{{'0', 'z'}, {0x20, 0x7e}, {0xa0, 0x7ff}, {0x800, 0xd7ff}, {0xe000, 0xfffd}, {0x10000, 0x10ffff}}
	var s strings.Builder
	for range n {
		rg := ranges[r.IntN(len(ranges))]
		s.WriteRune(rg[0] + rune(r.IntN(int(rg[1]-rg[0]+1))))
	}
	return s.String()
}

func TestProperty_EverySubRecordLiesInTheShardItsAggregateLandsOn(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 7))
	rounds := 60
	if testing.Short() {
		rounds = 10
	}
	for round := range rounds {
		m := randomShardMap(t, r)
		cfg := Config{MaxBytes: 100 + r.IntN(100_000), MaxRecords: 1 + r.IntN(300)}
		if r.IntN(2) == 0 { // a tight memory bound: aggregates closed early
			cfg.MaxPendingBytes = cfg.MaxBytes * (1 + r.IntN(4))
		}
		b, err := NewBuilder(cfg, m)
		require.NoError(t, err)

		perShardIn := make([][]Record, m.Len())
		perShardOut := make([][]Record, m.Len())
		emit := func(group int, a *Aggregate) error {
			// Limits.
			require.LessOrEqual(t, a.Count, cfg.MaxRecords)
			if a.Aggregated {
				require.GreaterOrEqual(t, a.Count, 2)
				require.LessOrEqual(t, a.Size(), cfg.MaxBytes, "round %d", round)
				require.Equal(t, "a", a.PartitionKey)
			} else {
				require.Equal(t, 1, a.Count)
				require.LessOrEqual(t, a.Size(), MaxRecordSize)
			}
			data := a.AppendKinesisData(nil)
			recs, err := DecodeKinesisRecord(a.PartitionKey, a.ExplicitHashKey, data)
			require.NoError(t, err)
			require.Len(t, recs, a.Count)

			// Where Kinesis puts the record: its explicit hash key, or the
			// hash of its partition key.
			landing := hashOf(t, Record{PartitionKey: a.PartitionKey, ExplicitHashKey: a.ExplicitHashKey})
			shard, ok := m.Lookup(landing)
			require.True(t, ok)
			require.Equal(t, group, shard, "emitted for the shard it lands on")
			s := m.Shard(shard)
			for _, rec := range recs {
				h := hashOf(t, rec)
				require.True(t, s.Start.Cmp(h) <= 0 && h.Cmp(s.End) <= 0, "sub-record hash %s outside shard %s [%s, %s]", h, s.ID, s.Start, s.End)
				// Decoded data must not alias the Builder's buffers.
				rec.Data = append([]byte{}, rec.Data...)
				perShardOut[group] = append(perShardOut[group], rec)
			}
			return nil
		}

		now := t0
		for range 300 {
			rec := randomRecord(r, m, 3*cfg.MaxBytes)
			g, err := b.Add(rec, now, emit)
			require.NoError(t, err)
			want, _ := m.Lookup(hashOf(t, rec))
			require.Equal(t, want, g)
			checkBound(t, b)
			perShardIn[g] = append(perShardIn[g], rec)
			now = now.Add(time.Duration(r.IntN(10)) * time.Millisecond)
			if r.IntN(50) == 0 {
				require.NoError(t, b.FlushOlder(now.Add(-20*time.Millisecond), emit))
			}
		}
		require.NoError(t, b.FlushAll(emit))
		records, bytes := b.Pending()
		require.Zero(t, records)
		require.Zero(t, bytes)

		// Round trip exact, in order within each shard.
		for i := range perShardIn {
			require.Equal(t, len(perShardIn[i]), len(perShardOut[i]))
			for j := range perShardIn[i] {
				in, out := perShardIn[i][j], perShardOut[i][j]
				if len(perShardIn[i]) > 0 && out.PartitionKey == "" {
					t.Fatalf("round %d shard %d record %d lost its keys", round, i, j)
				}
				require.Equal(t, in.Data, out.Data)
				require.Equal(t, in.PartitionKey, out.PartitionKey)
				require.Equal(t, in.ExplicitHashKey, out.ExplicitHashKey)
			}
		}
	}
}

func TestProperty_WithoutShardMapAllSubRecordsShareTheAggregatesHashKey(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 8))
	for range 20 {
		cfg := Config{MaxBytes: 100 + r.IntN(100_000), MaxRecords: 1 + r.IntN(300), MaxGroups: 1 + r.IntN(8)}
		if r.IntN(2) == 0 {
			cfg.MaxPendingBytes = cfg.MaxBytes * (1 + r.IntN(4))
		}
		b, err := NewBuilder(cfg, nil)
		require.NoError(t, err)
		// Per hash key (where Kinesis routes them), records keep their order.
		in, out := map[HashKey][]Record{}, map[HashKey][]Record{}
		emit := func(group int, a *Aggregate) error {
			require.True(t, group >= 0 && group < b.Groups())
			require.LessOrEqual(t, a.Count, cfg.MaxRecords)
			if a.Aggregated {
				require.LessOrEqual(t, a.Size(), cfg.MaxBytes)
			}
			recs, err := DecodeKinesisRecord(a.PartitionKey, a.ExplicitHashKey, a.AppendKinesisData(nil))
			require.NoError(t, err)
			landing := hashOf(t, Record{PartitionKey: a.PartitionKey, ExplicitHashKey: a.ExplicitHashKey})
			for _, rec := range recs {
				require.Equal(t, landing, hashOf(t, rec))
				rec.Data = append([]byte{}, rec.Data...)
				out[landing] = append(out[landing], rec)
			}
			return nil
		}
		for range 300 {
			rec := randomRecord(r, nil, 3*cfg.MaxBytes)
			_, err := b.Add(rec, t0, emit)
			require.NoError(t, err)
			checkBound(t, b)
			h := hashOf(t, rec)
			in[h] = append(in[h], rec)
		}
		require.NoError(t, b.FlushAll(emit))
		require.Equal(t, len(in), len(out))
		for h := range in {
			require.Equal(t, in[h], out[h])
		}
	}
}
