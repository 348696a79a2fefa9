package kinesis

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/kinesalite"
	"github.com/kplagent/agent/outputs"
)

// sendAll sends b like the agent's sender: the failed records again until
// every one is delivered (kinesalite does not throttle; a reshard may fail
// some once).
func sendAll(t *testing.T, o *Output, b outputs.Batch) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := o.Send(t.Context(), b)
		if err == nil {
			return
		}
		require.False(t, outputs.IsPermanent(err), "%v", err)
		require.True(t, time.Now().Before(deadline), "not delivered after 30s: %v", err)
		var left outputs.Batch
		for _, i := range failedOf(t, err, len(b.Records)) {
			left.Records = append(left.Records, b.Records[i])
		}
		b = left
		time.Sleep(20 * time.Millisecond)
	}
}

// sendInBatches sends aggregates in batches of up to 100, as the sender
// takes them from the spool.
func sendInBatches(t *testing.T, o *Output, all outputs.Batch) {
	t.Helper()
	for start := 0; start < len(all.Records); start += 100 {
		sendAll(t, o, outputs.Batch{Records: all.Records[start:min(start+100, len(all.Records))]})
	}
}

// mixedLines makes n lines with per-record random partition keys, keys of
// a small deterministic set, and explicit hash keys.
func mixedLines(r *rand.Rand, prefix string, n int) []aggregate.Record {
	recs := make([]aggregate.Record, n)
	for i := range recs {
		rec := aggregate.Record{Data: fmt.Appendf(nil, "%s line %d %x", prefix, i, r.Uint64())}
		switch i % 3 {
		case 0:
			rec.PartitionKey = fmt.Sprintf("%016x", r.Uint64())
		case 1:
			rec.PartitionKey = fmt.Sprintf("host-%d", i%37)
		default:
			rec.PartitionKey = "ehk"
			rec.ExplicitHashKey = aggregate.HashKey{Hi: r.Uint64(), Lo: r.Uint64()}.String()
		}
		recs[i] = rec
	}
	return recs
}

func TestSend_KinesaliteIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	srv := kinesalite.Start(t)
	const stream = "integration"
	srv.CreateStream(t, stream, 4)
	o := newTestOutput(t, testConfig(srv.Endpoint, func(c *Config) { c.Stream = stream }), nil)
	m, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	require.Equal(t, 4, m.Len())

	r := rand.New(rand.NewPCG(testSeed(t), 5))
	start := time.Now()
	first := mixedLines(r, "first", 6_000)
	sendInBatches(t, o, build(t, m, first))
	t.Logf("sent %d lines in %s", len(first), time.Since(start))
	start = time.Now()
	read := srv.ReadAll(t, stream)
	t.Logf("read %d records in %s", len(read), time.Since(start))
	users := kinesalite.Deaggregate(t, read)
	require.NoError(t, kinesalite.CheckKCL(users))
	requireLines(t, users, first)

	// A cross-check of a sample with awslabs' aws-kinesis-agg.
	start = time.Now()
	crossCheck(t, read[:min(20, len(read))])
	t.Logf("cross-checked in %s", time.Since(start))

	// Reshard: split shard 0, merge shards 2 and 3.
	s0 := m.Shard(0)
	mid := splitHalf(s0)
	_, err = srv.Client.SplitShard(context.Background(), &kinesis.SplitShardInput{
		StreamName: aws.String(stream), ShardToSplit: aws.String(s0.ID), NewStartingHashKey: aws.String(mid.String()),
	})
	require.NoError(t, err)
	srv.WaitActive(t, stream)
	_, err = srv.Client.MergeShards(context.Background(), &kinesis.MergeShardsInput{
		StreamName: aws.String(stream), ShardToMerge: aws.String(m.Shard(2).ID), AdjacentShardToMerge: aws.String(m.Shard(3).ID),
	})
	require.NoError(t, err)
	srv.WaitActive(t, stream)

	// Aggregates built against the old map, sent before the output knows
	// of the reshard: those that land on a shard not holding all their
	// sub-records are sent again, split (the first copy is what a KCL
	// drops); every line reaches a KCL in an aggregate it keeps.
	during := mixedLines(r, "during", 3_000)
	sendInBatches(t, o, build(t, m, during))
	require.Equal(t, uint64(2), o.ShardMapVersion())
	require.Positive(t, testutil.ToFloat64(o.metrics.mismatches))
	cur, err := o.ShardMap(t.Context())
	require.NoError(t, err)
	require.Equal(t, 4, cur.Len()) // 4 - 1 + 2 - 2 + 1
	users = kinesalite.Deaggregate(t, srv.ReadAll(t, stream))
	requireLines(t, kinesalite.KeptByKCL(users), append(append([]aggregate.Record(nil), first...), during...))

	// Aggregates built against the old map (in the spool during the
	// reshard) sent by an output that knows the new map: split before
	// sending, nothing lands where a KCL would drop it.
	before := len(srv.ReadAll(t, stream))
	after := mixedLines(r, "after", 3_000)
	sendInBatches(t, o, build(t, m, after))
	all := srv.ReadAll(t, stream)
	require.NoError(t, kinesalite.CheckKCL(kinesalite.Deaggregate(t, all[before:])))
	users = kinesalite.Deaggregate(t, all)
	requireLines(t, kinesalite.KeptByKCL(users), append(append(append([]aggregate.Record(nil), first...), during...), after...))
	require.Positive(t, testutil.ToFloat64(o.metrics.split))
}

// splitHalf returns the middle hash key of s's range.
func splitHalf(s aggregate.Shard) aggregate.HashKey {
	a, b := toBig(s.Start), toBig(s.End)
	a.Add(a, b)
	return fromBig(a.Rsh(a, 1))
}

// requireLines asserts that every record of want is among users, and that
// users hold nothing else.
func requireLines(t *testing.T, users []kinesalite.UserRecord, want []aggregate.Record) {
	t.Helper()
	got := make(map[string]bool, len(users))
	for _, u := range users {
		got[string(u.Data)] = true
	}
	missing := 0
	for _, w := range want {
		if !got[string(w.Data)] {
			missing++
			if missing < 5 {
				t.Errorf("missing %q", w.Data)
			}
		}
	}
	require.Zero(t, missing, "of %d lines", len(want))
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[string(w.Data)] = true
	}
	for d := range got {
		require.True(t, wanted[d], "unexpected %q", d)
	}
}

// crossCheck deaggregates recs with awslabs' aws-kinesis-agg (node) and
// compares with aggregate.Decode.
func crossCheck(t *testing.T, recs []kinesalite.Record) {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err)
	type nodeRecord struct {
		Data            string  `json:"data"`
		PartitionKey    string  `json:"partitionKey"`
		ExplicitHashKey *string `json:"explicitHashKey,omitempty"`
	}
	req := struct {
		Op      string       `json:"op"`
		Records []nodeRecord `json:"records"`
	}{Op: "deaggregate"}
	for _, r := range recs {
		req.Records = append(req.Records, nodeRecord{Data: base64.StdEncoding.EncodeToString(r.Data), PartitionKey: r.PartitionKey})
	}
	in, err := json.Marshal(req)
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), node, filepath.Join(kinesalite.NPMDir(), "kpl_crosscheck.js"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "node: %s", stderr.String())
	var resp struct {
		Results []struct {
			Error   string       `json:"error"`
			Records []nodeRecord `json:"records"`
		} `json:"results"`
	}
	require.NoError(t, json.Unmarshal(out, &resp))
	require.Len(t, resp.Results, len(recs))
	aggregated := 0
	for i, res := range resp.Results {
		require.Empty(t, res.Error)
		ours, err := aggregate.DecodeKinesisRecord(recs[i].PartitionKey, "", recs[i].Data)
		require.NoError(t, err)
		require.Len(t, res.Records, len(ours))
		if aggregate.IsAggregated(recs[i].Data) {
			aggregated++
		}
		for j, nr := range res.Records {
			data, err := base64.StdEncoding.DecodeString(nr.Data)
			require.NoError(t, err)
			require.Equal(t, ours[j].Data, data)
			require.Equal(t, ours[j].PartitionKey, nr.PartitionKey)
			if ours[j].ExplicitHashKey != "" {
				require.NotNil(t, nr.ExplicitHashKey)
				require.Equal(t, ours[j].ExplicitHashKey, *nr.ExplicitHashKey)
			}
		}
	}
	require.Positive(t, aggregated)
}

// Both protocols against kinesalite, aggregated and not; in CBOR, 500
// plain records get an answer kinesalite cuts at 16 KiB: the output goes
// on in JSON, and every line arrives (some twice).
func TestSend_KinesaliteProtocols(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	srv := kinesalite.Start(t)
	for i, proto := range []string{ProtocolCBOR, ProtocolJSON} {
		t.Run(proto, func(t *testing.T) {
			stream := fmt.Sprintf("protocols-%d", i)
			srv.CreateStream(t, stream, 2)
			cfg := testConfig(srv.Endpoint, func(c *Config) { c.Stream = stream }, withProtocol(proto))
			o := newTestOutput(t, cfg, nil)
			m, err := o.ShardMap(t.Context())
			require.NoError(t, err)
			r := rand.New(rand.NewPCG(testSeed(t), 7))
			agg := mixedLines(r, proto+" aggregated", 2_000)
			sendInBatches(t, o, build(t, m, agg))

			plain := mixedLines(r, proto+" plain", 500)
			po := newTestOutput(t, testConfig(srv.Endpoint, func(c *Config) { c.Stream = stream; c.Aggregation = false }, withProtocol(proto)), nil)
			b := outputs.Batch{Records: make([]aggregate.Aggregate, len(plain))}
			for j := range plain {
				// kinesalite does not report a plain record's explicit hash
				// key: the check would take it for misplaced.
				plain[j].ExplicitHashKey = ""
				b.Records[j] = aggregate.Aggregate{PartitionKey: plain[j].PartitionKey, Body: plain[j].Data, Count: 1}
			}
			err = po.Send(t.Context(), b)
			if proto == ProtocolCBOR {
				require.ErrorContains(t, err, "CBOR") // the cut answer
				require.False(t, po.proto.useCBOR())
				err = po.Send(t.Context(), b)
			}
			require.NoError(t, err)
			require.True(t, o.proto.useCBOR() == (proto == ProtocolCBOR))

			users := kinesalite.Deaggregate(t, srv.ReadAll(t, stream))
			require.NoError(t, kinesalite.CheckKCL(users))
			requireLines(t, users, append(agg, plain...))
		})
	}
}
