package aggregate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The cross-checks run awslabs' aws-kinesis-agg (npm), an independent
// implementation of the KPL format, through test/npm/kpl_crosscheck.js.

const npmDir = "../test/npm"

// nodeRecord is a Kinesis or user record as the script exchanges it.
type nodeRecord struct {
	Data                    string  `json:"data"` // base64
	PartitionKey            string  `json:"partitionKey"`
	ExplicitHashKey         *string `json:"explicitHashKey,omitempty"`
	HasExplicitHashKeyIndex *bool   `json:"hasExplicitHashKeyIndex,omitempty"`
}

type nodeResult struct {
	Error   string       `json:"error"`
	Records []nodeRecord `json:"records"`
}

func toNode(pk, ehk string, data []byte) nodeRecord {
	r := nodeRecord{Data: base64.StdEncoding.EncodeToString(data), PartitionKey: pk}
	if ehk != "" {
		r.ExplicitHashKey = &ehk
	}
	return r
}

// requireNode returns the path of node, failing the test (skipping it with
// -short) when node or the npm test peers are missing.
func requireNode(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(npmDir, "node_modules", "aws-kinesis-agg", "package.json")); err != nil {
		if testing.Short() {
			t.Skip("aws-kinesis-agg is not installed (make npm-deps); skipped in -short mode")
		}
		t.Fatalf("the KPL cross-check needs the npm test peers: run `make npm-deps` (npm ci --prefix test/npm): %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("the KPL cross-check needs node (Node.js) in PATH: %v", err)
	}
	return node
}

// runNode sends a request to the cross-check script and returns its results.
func runNode(t *testing.T, req any) []nodeResult {
	t.Helper()
	node := requireNode(t)
	in, err := json.Marshal(req)
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), node, filepath.Join(npmDir, "kpl_crosscheck.js"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "node: %s", stderr.String())
	var resp struct {
		Results []nodeResult `json:"results"`
	}
	require.NoError(t, json.Unmarshal(out, &resp))
	return resp.Results
}

func decodeBase64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

func TestCrossCheck_NodeAggLibDecodesWhatWeEncode(t *testing.T) {
	requireNode(t)
	r := rand.New(rand.NewPCG(testSeed(t), 9))
	var sent []emitted   // Kinesis records, in order
	var users [][]Record // the user records of each
	encode := func(cfg Config, m *ShardMap, recs []Record) {
		b, err := NewBuilder(cfg, m)
		require.NoError(t, err)
		var c collector
		perGroup := map[int][]Record{}
		for _, rec := range recs {
			g, err := b.Add(rec, t0, func(group int, a *Aggregate) error {
				require.NoError(t, c.emit(group, a))
				users = append(users, perGroup[group])
				delete(perGroup, group)
				return nil
			})
			require.NoError(t, err)
			perGroup[g] = append(perGroup[g], rec)
		}
		require.NoError(t, b.FlushAll(func(group int, a *Aggregate) error {
			require.NoError(t, c.emit(group, a))
			users = append(users, perGroup[group])
			return nil
		}))
		sent = append(sent, c.out...)
	}
	for _, tc := range goldenCases() {
		encode(Config{MaxBytes: MaxRecordSize}, allShards(t), tc.records)
	}
	for range 20 { // random records, shard maps and sizes
		m := randomShardMap(t, r)
		cfg := Config{MaxBytes: 200 + r.IntN(60_000)}
		var recs []Record
		for range 100 {
			recs = append(recs, randomRecord(r, m, 2*cfg.MaxBytes))
		}
		encode(cfg, m, recs)
	}
	// Aggregates near the 1 MiB limit.
	var big []Record
	for i := range 60 {
		big = append(big, Record{PartitionKey: randomUnicode(r, 256), ExplicitHashKey: []string{"", "0", MaxHashKey.String()}[i%3], Data: bytes.Repeat([]byte{byte(i)}, 40_000+r.IntN(20_000))})
	}
	encode(Config{MaxBytes: MaxRecordSize}, allShards(t), big)
	nearLimit := 0
	for _, e := range sent {
		if e.Agg.Size() > MaxRecordSize-60_000 {
			nearLimit++
		}
	}
	require.NotZero(t, nearLimit)

	var req struct {
		Op      string       `json:"op"`
		Records []nodeRecord `json:"records"`
	}
	req.Op = "deaggregate"
	for _, e := range sent {
		req.Records = append(req.Records, toNode(e.Agg.PartitionKey, e.Agg.ExplicitHashKey, e.Data))
	}
	results := runNode(t, req)
	require.Len(t, results, len(sent))
	aggregated := 0
	for i, res := range results {
		require.Empty(t, res.Error, "Kinesis record %d", i)
		want := users[i]
		require.Len(t, res.Records, len(want), "Kinesis record %d", i)
		if !sent[i].Agg.Aggregated {
			// Passed through as it is, with the Kinesis record's keys.
			require.Equal(t, want[0].Data, decodeBase64(t, res.Records[0].Data))
			require.Equal(t, want[0].PartitionKey, res.Records[0].PartitionKey)
			continue
		}
		aggregated++
		for j, got := range res.Records {
			require.Equal(t, want[j].Data, decodeBase64(t, got.Data), "record %d.%d", i, j)
			require.Equal(t, want[j].PartitionKey, got.PartitionKey, "record %d.%d", i, j)
			require.NotNil(t, got.HasExplicitHashKeyIndex)
			require.Equal(t, want[j].ExplicitHashKey != "", *got.HasExplicitHashKeyIndex, "record %d.%d", i, j)
			if want[j].ExplicitHashKey != "" {
				require.Equal(t, want[j].ExplicitHashKey, *got.ExplicitHashKey, "record %d.%d", i, j)
			}
		}
	}
	require.Greater(t, aggregated, 20)
}

func TestCrossCheck_WeDecodeWhatNodeAggLibEncodes(t *testing.T) {
	requireNode(t)
	r := rand.New(rand.NewPCG(testSeed(t), 10))
	// aws-kinesis-agg lists its key tables with Object.keys, which puts keys
	// that look like array indexes (decimal integers below 2^32-1) first in
	// numeric order, whatever their insertion order: the indexes it wrote
	// then point to the wrong keys. Its batches here keep the one such key
	// used, "0", first in each Kinesis record, and partition keys never look
	// like numbers.
	userKey := func() string { return "k" + randomUnicode(r, r.IntN(256)) }
	var batches [][]Record
	for range 30 { // small records, one Kinesis record per batch
		batch := []Record{{PartitionKey: userKey(), ExplicitHashKey: "0", Data: []byte("first")}}
		for range 1 + r.IntN(60) {
			rec := randomRecord(r, nil, 1000)
			rec.PartitionKey = []string{fmt.Sprint("k-hot-", r.IntN(3)), userKey(), "k" + strings.Repeat("ü", 255)}[r.IntN(3)]
			if rec.ExplicitHashKey != "" && rec.ExplicitHashKey != "0" {
				rec.ExplicitHashKey = HashKey{Hi: 1 + r.Uint64N(1<<62), Lo: r.Uint64()}.String()
			}
			if r.IntN(8) == 0 {
				rec.Data = []byte{}
			}
			batch = append(batch, rec)
		}
		batches = append(batches, batch)
	}
	var big []Record // split by the library near 1 MiB
	for i := range 80 {
		rec := Record{PartitionKey: userKey(), Data: make([]byte, 30_000+r.IntN(40_000))}
		for j := range rec.Data {
			rec.Data[j] = byte(j + i)
		}
		if i%2 == 1 {
			rec.ExplicitHashKey = MaxHashKey.String()
		}
		big = append(big, rec)
	}
	batches = append(batches, big)

	var req struct {
		Op      string         `json:"op"`
		Batches [][]nodeRecord `json:"batches"`
	}
	req.Op = "aggregate"
	for _, batch := range batches {
		var nb []nodeRecord
		for _, rec := range batch {
			nb = append(nb, toNode(rec.PartitionKey, rec.ExplicitHashKey, rec.Data))
		}
		req.Batches = append(req.Batches, nb)
	}
	results := runNode(t, req)
	require.Len(t, results, len(batches))
	for i, res := range results {
		require.Empty(t, res.Error, "batch %d", i)
		var got []Record
		for j, kr := range res.Records {
			data := decodeBase64(t, kr.Data)
			require.True(t, hasMagic(data), "the library aggregates even one record")
			if i == len(results)-1 && j < len(res.Records)-1 {
				require.Greater(t, len(data), MaxRecordSize-80_000, "Kinesis record %d is near the limit", j)
			}
			recs, err := Decode(data)
			require.NoError(t, err, "batch %d, Kinesis record %d", i, j)
			got = append(got, recs...)
		}
		require.Equal(t, batches[i], got, "batch %d", i)

		// One Kinesis record: our Builder writes the very same bytes.
		if len(res.Records) == 1 {
			out := encodeAll(t, batches[i])
			require.Len(t, out, 1)
			require.Equal(t, res.Records[0].Data, base64.StdEncoding.EncodeToString(out[0].Data), "batch %d", i)
		}
	}
	require.Greater(t, len(results[len(results)-1].Records), 2, "the large batch was split")
}

func TestCrossCheck_NodeAggLibRejectsAProto3StyleEncodingThatDropsRequiredFields(t *testing.T) {
	requireNode(t)
	// What a proto3-style encoder writes for records ("k", index 0, "x") and
	// ("k", index 0, empty data): the zero index and the empty data are
	// dropped. Required fields are missing, and consumers refuse it.
	for _, body := range []pb{
		pb(nil).str(1, "k").bytes(3, pb(nil).str(3, "x")),
		pb(nil).str(1, "k").bytes(3, pb(nil).varint(1, 0).str(3, "x")).bytes(3, pb(nil).varint(1, 0)),
	} {
		_, err := Decode(wire(body))
		require.ErrorIs(t, err, ErrMalformed)
		var req struct {
			Op      string       `json:"op"`
			Records []nodeRecord `json:"records"`
		}
		req.Op = "deaggregate"
		req.Records = []nodeRecord{toNode("a", "", wire(body))}
		res := runNode(t, req)
		require.Len(t, res, 1)
		require.Contains(t, res[0].Error, "missing required", fmt.Sprintf("%x", body))
	}
}
