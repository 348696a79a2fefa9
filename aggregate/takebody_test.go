package aggregate

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TakeBody hands emit the aggregate's buffer: what emit keeps stays valid
// after emit returns, and the Builder, building in the buffers handed back
// to it, makes byte for byte the aggregates a Builder that keeps its
// buffers makes.
func TestBuilder_TakeBodyKeepsBodiesAndMakesTheSameAggregates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		shards bool
	}{
		{"kpl by key", Config{MaxBytes: 4 << 10}, false},
		{"kpl by shard", Config{MaxBytes: 4 << 10}, true},
		{"lines", Config{MaxBytes: 4 << 10, Framing: FramingLines}, false},
		{"large records", Config{MaxBytes: 200 << 10}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m *ShardMap
			if tc.shards {
				m = allShards(t)
			}
			ref, err := NewBuilder(tc.cfg, m)
			require.NoError(t, err)
			bld, err := NewBuilder(tc.cfg, m)
			require.NoError(t, err)

			type kept struct {
				a    Aggregate
				own  []byte
				want []byte
			}
			var want [][]byte // the reference's aggregates, copied
			var wantAggs []Aggregate
			var held []kept
			var pool [][]byte
			emitted := 0
			refEmit := func(_ int, a *Aggregate) error {
				want = append(want, a.AppendEntry(nil))
				wantAggs = append(wantAggs, *a)
				return nil
			}
			check := func(k kept) {
				require.Equal(t, k.want, k.a.AppendEntry(nil), "a kept body changed before its buffer was handed back")
			}
			emit := func(_ int, a *Aggregate) error {
				var repl []byte
				if len(pool) > 0 {
					repl, pool = pool[len(pool)-1], pool[:len(pool)-1]
				}
				own := bld.TakeBody(repl)
				k := kept{a: *a, own: own, want: want[emitted]}
				emitted++
				require.Equal(t, wantAggs[emitted-1].Count, a.Count)
				held = append(held, k)
				if len(held) > 3 { // hand the oldest back, as the sender does once it sent them
					check(held[0])
					pool = append(pool, held[0].own)
					held = held[1:]
				}
				return nil
			}
			rng := rand.New(rand.NewPCG(1, 2))
			now := time.Unix(1, 0)
			for i := range 3000 {
				size := 1 + rng.IntN(300)
				if tc.cfg.MaxBytes > 100<<10 && i%50 == 0 {
					size = 150 << 10
				}
				data := make([]byte, size)
				for j := range data {
					data[j] = 'a' + byte(rng.IntN(26))
				}
				r := Record{Data: data, PartitionKey: fmt.Sprintf("k%d", rng.IntN(7))}
				_, err := ref.Add(r, now, refEmit)
				require.NoError(t, err)
				_, err = bld.Add(r, now, emit)
				require.NoError(t, err)
			}
			require.NoError(t, ref.FlushAll(refEmit))
			require.NoError(t, bld.FlushAll(emit))
			require.Equal(t, len(want), emitted)
			require.Greater(t, emitted, 20)
			for _, k := range held {
				check(k)
			}
		})
	}
}

func TestBuilder_TakeBodyOutsideEmitPanics(t *testing.T) {
	b, err := NewBuilder(Config{}, nil)
	require.NoError(t, err)
	require.Panics(t, func() { b.TakeBody(nil) })
}
