package aggregate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// FuzzDecode checks that Decode and ForEach never panic on any input, agree
// with each other, and that what they accept re-encodes to the same records.
// Every input is tried twice: as Kinesis record data, and as the protobuf
// body of an aggregate (framed with magic and a correct MD5), since random
// bytes rarely carry a valid MD5.
func FuzzDecode(f *testing.F) {
	for _, seed := range decodeSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, err := Decode(in)
		if !hasMagic(in) {
			require.NoError(t, err)
			require.Equal(t, []Record{{Data: in}}, recs)
		} else if err == nil {
			checkDecoded(t, in[magicLen:len(in)-digestLen], recs)
		}

		recs, err = Decode(wire(in))
		a := Aggregate{Aggregated: true, Body: in}
		var seen []Record
		ferr := ForEach(&a, func(pk, ehk, data []byte) error {
			seen = append(seen, Record{PartitionKey: string(pk), ExplicitHashKey: string(ehk), Data: data})
			return nil
		})
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			require.Error(t, ferr, "Decode refused what ForEach accepted")
			require.Empty(t, seen, "ForEach delivered records of a malformed aggregate")
			return
		}
		require.NoError(t, ferr)
		require.Len(t, seen, len(recs))
		for i := range recs {
			require.Equal(t, recs[i].PartitionKey, seen[i].PartitionKey)
			require.Equal(t, recs[i].ExplicitHashKey, seen[i].ExplicitHashKey)
			require.Equal(t, recs[i].Data, seen[i].Data)
		}
		checkDecoded(t, in, recs)
	})
}

// checkDecoded checks the records decoded from body: their data lies inside
// body, and encoding them again gives the same records.
func checkDecoded(t *testing.T, body []byte, recs []Record) {
	for _, r := range recs {
		require.NotNil(t, r.Data)
		if len(r.Data) > 0 {
			require.True(t, bytes.Contains(body, r.Data))
		}
	}
	again, err := Decode(wire(encodeRaw(recs)))
	require.NoError(t, err)
	require.Equal(t, recs, again)
}

// encodeRaw encodes records as an AggregatedRecord without the Builder's
// validation (decoded keys need not be valid Kinesis keys), tags included.
func encodeRaw(recs []Record) []byte {
	var tables, records []byte
	pkIdx, ehkIdx := map[string]uint64{}, map[string]uint64{}
	for _, r := range recs {
		if _, ok := pkIdx[r.PartitionKey]; !ok {
			pkIdx[r.PartitionKey] = uint64(len(pkIdx))
			tables = protowire.AppendTag(tables, 1, protowire.BytesType)
			tables = protowire.AppendString(tables, r.PartitionKey)
		}
	}
	for _, r := range recs {
		if _, ok := ehkIdx[r.ExplicitHashKey]; !ok && r.ExplicitHashKey != "" {
			ehkIdx[r.ExplicitHashKey] = uint64(len(ehkIdx))
			tables = protowire.AppendTag(tables, 2, protowire.BytesType)
			tables = protowire.AppendString(tables, r.ExplicitHashKey)
		}
	}
	for _, r := range recs {
		m := pb(nil).varint(1, pkIdx[r.PartitionKey])
		if i, ok := ehkIdx[r.ExplicitHashKey]; ok {
			m = m.varint(2, i)
		}
		m = m.bytes(3, r.Data)
		for _, tag := range r.Tags {
			m = m.bytes(4, pb(nil).str(1, tag.Key).str(2, tag.Value))
		}
		records = protowire.AppendTag(records, 3, protowire.BytesType)
		records = protowire.AppendBytes(records, m)
	}
	return append(tables, records...)
}

// decodeSeeds returns the seed corpus: the golden aggregates, whole and
// damaged, and hand-made bodies.
func decodeSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, tc := range goldenCases() {
		for _, e := range encodeAll(t, tc.records) {
			seeds = append(seeds, e.Data)
			if e.Agg.Aggregated {
				seeds = append(seeds, e.Agg.Body, e.Data[:len(e.Data)-3], e.Data[:len(e.Data)/2])
			}
		}
	}
	tag := pb(nil).str(1, "k").str(2, "v")
	seeds = append(seeds,
		nil,
		magic[:],
		pb(nil).str(1, "pk").str(2, "").bytes(3, pb(nil).varint(1, 0).varint(2, 0).str(3, "x").bytes(4, tag)),
		pb(nil).bytes(3, pb(nil).varint(1, 0).str(3, "x")).str(1, "late table"),
		pb(nil).str(1, "pk").bytes(3, pb(nil).varint(1, 7).str(3, "x")),
		pb{0x0b, 0x0c},
	)
	return seeds
}

// FuzzParseEntry checks that ParseEntry never panics, and that what it
// accepts encodes back to an entry that parses to the same aggregate.
func FuzzParseEntry(f *testing.F) {
	for _, seed := range entrySeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := ParseEntry(in)
		if err != nil {
			require.ErrorIs(t, err, ErrEntry)
			return
		}
		require.LessOrEqual(t, len(a.Body), len(in))
		require.GreaterOrEqual(t, a.Count, 1)
		again, err := ParseEntry(a.AppendEntry(nil))
		require.NoError(t, err)
		require.Equal(t, a, again)
		// ForEach on whatever body an entry carries must not panic either.
		ferr := ForEach(&a, func(_, _, _ []byte) error { return nil })
		// Nor the reshard checks: Covers, and Split, which keeps every
		// record of a valid aggregate.
		m := evenShards(t, 3)
		if i, err := m.Route(&a); err == nil {
			covered, err := m.Covers(&a, i)
			if ferr != nil && a.Aggregated {
				require.Error(t, err, "Covers accepted what ForEach refused")
				require.False(t, covered)
			}
		}
		n := 0
		serr := Split(&a, m, func(p *Aggregate) error {
			n += p.Count
			return nil
		})
		if ferr == nil && serr == nil {
			require.Equal(t, a.Count, n)
		}
	})
}

func entrySeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, tc := range goldenCases() {
		for _, e := range encodeAll(t, tc.records) {
			seeds = append(seeds, e.Agg.AppendEntry(nil))
		}
	}
	return append(seeds, nil, []byte{1}, []byte{1, 0, 1, 1, 'k', 0, 0}, []byte{1, 1, 2, 1, 'a', 0, 0})
}

// FuzzBuilder adds records made of fuzzed keys and data and checks that the
// Builder either refuses them with a sentinel error or round-trips them.
func FuzzBuilder(f *testing.F) {
	f.Add("pk1", "pk2", "", []byte("hello"), uint16(200), uint8(5))
	f.Add("é", "a\xff", "340282366920938463463374607431768211455", []byte{}, uint16(30), uint8(3))
	f.Add("x", "x", "0", bytes.Repeat([]byte{0}, 300), uint16(0), uint8(9))
	f.Fuzz(func(t *testing.T, pk1, pk2, ehk string, data []byte, maxBytes uint16, n uint8) {
		b, err := NewBuilder(Config{MaxBytes: int(maxBytes)}, allShards(t))
		require.NoError(t, err)
		var want, got []Record
		emit := func(_ int, a *Aggregate) error {
			require.True(t, a.Count == 1 || a.Size() <= b.Config().MaxBytes)
			recs, err := DecodeKinesisRecord(a.PartitionKey, a.ExplicitHashKey, a.AppendKinesisData(nil))
			require.NoError(t, err)
			got = append(got, recs...)
			return nil
		}
		for i := range int(n % 16) {
			r := Record{PartitionKey: pk1, Data: data[:len(data)*i/16]}
			switch i % 3 {
			case 1:
				r.PartitionKey = pk2
			case 2:
				r.ExplicitHashKey = ehk
			}
			if _, err := b.Add(r, t0, emit); err != nil {
				require.True(t, errorIsAny(err, ErrPartitionKey, ErrExplicitHashKey, ErrRecordTooLarge), err.Error())
				continue
			}
			want = append(want, r)
		}
		require.NoError(t, b.FlushAll(emit))
		require.Len(t, got, len(want))
		for i := range want {
			require.Equal(t, string(want[i].Data), string(got[i].Data))
			if len(want) > 1 || got[i].PartitionKey != "" { // a lone plain record keeps its keys
				require.Equal(t, want[i].PartitionKey, got[i].PartitionKey)
				require.Equal(t, want[i].ExplicitHashKey, got[i].ExplicitHashKey)
			}
		}
	})
}

func errorIsAny(err error, targets ...error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// TestFuzzSeedCorpus_IsUpToDate keeps testdata/fuzz in step with the seeds
// (rewritten with -update), so that the corpus is there for go test -fuzz and
// reviewable in the repository.
func TestFuzzSeedCorpus_IsUpToDate(t *testing.T) {
	for name, seeds := range map[string][][]byte{"FuzzDecode": decodeSeeds(t), "FuzzParseEntry": entrySeeds(t)} {
		dir := filepath.Join("testdata", "fuzz", name)
		for _, seed := range seeds {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
			sum := sha256.Sum256([]byte(content))
			path := filepath.Join(dir, "seed-"+hex.EncodeToString(sum[:8]))
			if *update {
				require.NoError(t, os.MkdirAll(dir, 0o755))
				require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
			}
			got, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./aggregate/ -run TestFuzzSeedCorpus -update")
			require.Equal(t, content, string(got))
		}
	}
}
