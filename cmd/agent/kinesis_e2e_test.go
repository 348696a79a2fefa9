package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/fakeaws"
	"github.com/kplagent/agent/internal/kinesalite"
)

// The Kinesis end-to-end tests run the real binary against kinesalite (the
// Kinesis emulator, node from test/npm; skipped only without node), read
// every shard back, deaggregate, and check what a KCL consumer would get.

// awsEnv is the agent's environment for a fake AWS endpoint: the test's,
// without its AWS settings (profiles, CA bundles, real credentials), plus
// extra.
func awsEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// startAgentFullEnv is startAgent with exactly the environment env.
func startAgentFullEnv(t *testing.T, env []string, args ...string) *agentProc {
	t.Helper()
	cmd := agentCmd(args...)
	cmd.Env = env
	var stderr bytes.Buffer
	sw := &syncWriter{w: &stderr}
	cmd.Stderr, cmd.Stdout = sw, sw
	require.NoError(t, cmd.Start())
	p := &agentProc{cmd: cmd, stderr: &stderr, sw: sw, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func kinesisURL(stream, endpoint string) string {
	return "kinesis://" + stream + "?region=" + kinesalite.Region + "&endpoint=" + url.QueryEscape(endpoint) + "&rate_limit=off"
}

// requireEveryLine checks that got holds every line of [0, n) written by
// writeLog, and nothing else; dups tells whether a line may come twice.
func requireEveryLine(t *testing.T, got []string, n int, dups bool) {
	t.Helper()
	seen := make([]int, n)
	for _, l := range got {
		i, ok := lineNumber([]byte(l))
		require.True(t, ok && i < n, "a line the test never wrote: %.60q", l)
		seen[i]++
	}
	var missing []int
	twice := 0
	for i, c := range seen {
		if c == 0 {
			missing = append(missing, i)
		}
		if c > 1 {
			twice++
		}
	}
	require.Empty(t, missing, "%d of %d lines missing (first: %v)", len(missing), n, missing[:min(len(missing), 10)])
	if !dups {
		require.Zero(t, twice, "lines delivered twice on a clean run")
	}
}

// 200k lines to a 4-shard stream, with the default random keys and with
// --partition-key deterministic: every line arrives once, in an aggregate
// whose every sub-record lies in the range of the shard it was read from,
// and `agent kpl decode` decodes what `aws kinesis get-records` shows.
func TestTailOnce_Kinesis_EveryLineInItsShard(t *testing.T) {
	t.Parallel()
	srv := kinesalite.Start(t)
	env := awsEnv(srv.Env()...)
	const n = 30_000
	dir := t.TempDir()
	policies := []string{"random", "deterministic"}
	procs := map[string]*agentProc{}
	for _, pk := range policies {
		srv.CreateStream(t, pk, 4)
		log := filepath.Join(dir, pk+".log")
		writeLog(t, log, 0, n, 60)
		procs[pk] = startAgentFullEnv(t, env, "tail", log, "--once", "--to", kinesisURL(pk, srv.Endpoint),
			"--partition-key", pk, "--state-dir", filepath.Join(dir, "state-"+pk))
	}
	for _, pk := range policies {
		p := procs[pk]
		require.Equal(t, 0, p.wait(t, 2*time.Minute), p.stderr.String())
		recs := srv.ReadAll(t, pk)
		users := kinesalite.Deaggregate(t, recs)
		require.NoError(t, kinesalite.CheckKCL(users), pk)
		got := make([]string, len(users))
		shards := map[string]bool{}
		for i, u := range users {
			got[i] = string(u.Data) + "\n"
			shards[u.Shard.ID] = true
		}
		requireEveryLine(t, got, n, false)
		require.Len(t, shards, 4, "%s: every shard took records", pk)
		require.Greater(t, len(users), 100*len(recs), "%s: %d lines in %d Kinesis records", pk, len(users), len(recs))
		t.Logf("%s: %d lines in %d Kinesis records", pk, len(users), len(recs))

		// What an operator does to see what the stream holds: aws kinesis
		// get-records on one shard, piped to agent kpl decode.
		var shard0 []kinesalite.Record
		for _, r := range recs {
			if r.Shard.ID == recs[0].Shard.ID {
				shard0 = append(shard0, r)
			}
		}
		type getRecord struct {
			SequenceNumber, PartitionKey, Data string
			ApproximateArrivalTimestamp        float64
		}
		var out struct {
			Records            []getRecord
			NextShardIterator  string
			MillisBehindLatest int
		}
		want := 0
		for _, r := range shard0 {
			out.Records = append(out.Records, getRecord{SequenceNumber: r.SequenceNumber, PartitionKey: r.PartitionKey,
				Data: base64.StdEncoding.EncodeToString(r.Data), ApproximateArrivalTimestamp: 1.7e9})
			for _, u := range users {
				if u.SequenceNumber == r.SequenceNumber && u.Shard.ID == r.Shard.ID {
					want++
				}
			}
		}
		out.NextShardIterator = "AAAA"
		js, err := json.Marshal(out)
		require.NoError(t, err)
		cmd := agentCmd("kpl", "decode")
		cmd.Stdin = bytes.NewReader(js)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), stderr.String())
		lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
		require.Len(t, lines, want)
		for _, l := range lines[:min(len(lines), 1000)] {
			var d struct {
				Seq  string  `json:"seq"`
				PK   string  `json:"pk"`
				Text *string `json:"text"`
			}
			require.NoError(t, json.Unmarshal([]byte(l), &d), l)
			require.NotNil(t, d.Text, l)
			_, ok := lineNumber([]byte(*d.Text + "\n"))
			require.True(t, ok, l)
			h := aggregate.PartitionKeyHash(d.PK)
			require.True(t, shard0[0].Shard.Contains(h), "decoded record %s of shard %s has a key outside it", d.Seq, shard0[0].Shard.ID)
		}
	}
}

// A reshard (a split and a merge) while the agent follows a growing file:
// the agent learns the new map, and every line reaches a KCL consumer in an
// aggregate it keeps (sub-records all in the range of their shard), some
// perhaps twice (an aggregate that landed on a shard that does not hold all
// of it is sent again, split; the KCL drops the first copy whole).
func TestTail_Kinesis_ReshardWhileShipping(t *testing.T) {
	t.Parallel()
	srv := kinesalite.Start(t)
	const stream = "resharded"
	srv.CreateStream(t, stream, 4)
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	const batch, batches = 4_000, 20
	writeLog(t, log, 0, batch, 60)
	admin := freeAddr(t)
	p := startAgentFullEnv(t, awsEnv(srv.Env()...), "tail", log, "--to", kinesisURL(stream, srv.Endpoint)+"&shard_map_refresh=1s",
		"--partition-key", "deterministic", "--state-dir", filepath.Join(dir, "state"), "--admin", admin, "--log-level", "info")
	put := func() float64 { return metric(admin, "agent_kinesis_user_records_put_total") }
	p.waitFor(t, time.Minute, func() bool { return put() >= batch }, "the first lines were not delivered")

	// More lines while the stream is resharded.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for b := 1; b < batches; b++ {
			writeLog(t, log, b*batch, (b+1)*batch, 60)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	m, err := aggregate.NewShardMap(openShards(t, srv, stream))
	require.NoError(t, err)
	s0 := m.Shard(0)
	mid := new(big.Int).Add(hashBig(s0.Start), new(big.Int).Rsh(new(big.Int).Sub(hashBig(s0.End), hashBig(s0.Start)), 1))
	_, err = srv.Client.SplitShard(t.Context(), &kinesis.SplitShardInput{
		StreamName: aws.String(stream), ShardToSplit: aws.String(s0.ID), NewStartingHashKey: aws.String(mid.String()),
	})
	require.NoError(t, err)
	srv.WaitActive(t, stream)
	_, err = srv.Client.MergeShards(t.Context(), &kinesis.MergeShardsInput{
		StreamName: aws.String(stream), ShardToMerge: aws.String(m.Shard(2).ID), AdjacentShardToMerge: aws.String(m.Shard(3).ID),
	})
	require.NoError(t, err)
	srv.WaitActive(t, stream)
	wg.Wait()

	// The output refreshes its map when it sends, so the lines written so
	// far may all be gone before it learns of the merge: write more until it
	// has seen both changes, then once more, so that the flow aggregates
	// against the new map (and logs it).
	next := batches
	changed := func() float64 {
		return metricWith(admin, "agent_kinesis_shard_map_refreshes_total{", `result="changed"`)
	}
	p.waitFor(t, 2*time.Minute, func() bool {
		if changed() >= 2 {
			return true
		}
		if put() >= float64(next*batch) {
			writeLog(t, log, next*batch, (next+1)*batch, 60)
			next++
		}
		return false
	}, "the agent did not learn the new map (a split and a merge)")
	writeLog(t, log, next*batch, (next+1)*batch, 60)
	next++

	n := batch * next
	p.waitFor(t, 2*time.Minute, func() bool { return put() >= float64(n) }, "not every line was delivered")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	require.Contains(t, p.stderr.String(), "shard map changed: aggregating per shard of the new map")

	users := kinesalite.Deaggregate(t, srv.ReadAll(t, stream))
	kept := kinesalite.KeptByKCL(users)
	got := make([]string, len(kept))
	for i, u := range kept {
		got[i] = string(u.Data) + "\n"
	}
	requireEveryLine(t, got, n, true)
	t.Logf("%d lines, %d user records read back, %d kept by a KCL", n, len(users), len(kept))
}

// metricWith sums the samples of the admin endpoint's lines that start
// with prefix and contain label (-1 when unreachable).
func metricWith(addr, prefix, label string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	total := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, label) {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				total += v
			}
		}
	}
	return total
}

func openShards(t *testing.T, srv *kinesalite.Server, stream string) []aggregate.Shard {
	t.Helper()
	var out []aggregate.Shard
	for _, s := range srv.Shards(t, stream) {
		if s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
			continue
		}
		start, err := aggregate.ParseHashKey(aws.ToString(s.HashKeyRange.StartingHashKey))
		require.NoError(t, err)
		end, err := aggregate.ParseHashKey(aws.ToString(s.HashKeyRange.EndingHashKey))
		require.NoError(t, err)
		out = append(out, aggregate.Shard{ID: aws.ToString(s.ShardId), Start: start, End: end})
	}
	return out
}

func hashBig(h aggregate.HashKey) *big.Int {
	v, _ := new(big.Int).SetString(h.String(), 10)
	return v
}

// Firehose: every line arrives, joined into newline-ended records, through
// a throttled PutRecordBatch or two.
func TestTailOnce_Firehose_EveryLineArrives(t *testing.T) {
	t.Parallel()
	fh := &fakeaws.Firehose{}
	fh.FailNext(2)
	hs := httptest.NewServer(fh)
	defer hs.Close()
	const n = 50_000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 80)
	p := startAgentFullEnv(t, awsEnv("AWS_ACCESS_KEY_ID=fake", "AWS_SECRET_ACCESS_KEY=fake", "AWS_EC2_METADATA_DISABLED=true"),
		"tail", log, "--once", "--to", "firehose://to-s3?region=us-east-1&endpoint="+url.QueryEscape(hs.URL),
		"--state-dir", filepath.Join(dir, "state"))
	require.Equal(t, 0, p.wait(t, 2*time.Minute), p.stderr.String())
	var got []string
	recs := fh.Records()
	for _, r := range recs {
		require.True(t, bytes.HasSuffix(r, []byte("\n")), "a Firehose record ends with a newline")
		require.LessOrEqual(t, len(r), 1000<<10)
		for _, l := range strings.SplitAfter(string(r), "\n") {
			if l != "" {
				got = append(got, l)
			}
		}
	}
	requireEveryLine(t, got, n, false)
	require.Less(t, len(recs)*100, n, "lines are joined into few records (%d)", len(recs))
	require.Greater(t, fh.Calls(), 2, "the throttled calls were retried")
}

// agent tail --once interrupted while its records wait for a Kinesis shard
// map that does not come (the endpoint fails ListShards) read nothing: it
// must not exit 0 as if done, nor say on the next run that the saved
// positions are at the end of the files (they are at 0: the first run had
// saved them before reading).
func TestTailOnce_InterruptedBeforeTheShardMapCame_IsNotDone(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"__type":"InternalFailure"}`, http.StatusInternalServerError)
	}))
	defer srv.Close()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 10, 40)
	env := awsEnv("AWS_ACCESS_KEY_ID=fake", "AWS_SECRET_ACCESS_KEY=fake", "AWS_EC2_METADATA_DISABLED=true")
	for run := range 2 {
		p := startAgentFullEnv(t, env, "tail", log, "--once", "--state-dir", filepath.Join(dir, "state"),
			"--to", kinesisURL("s", srv.URL))
		p.waitFor(t, 30*time.Second, func() bool { return strings.Contains(p.output(), "fetching the shard map failed") }, "the shard map's failure logged")
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		code := p.wait(t, 30*time.Second)
		out := p.output()
		require.Equal(t, 1, code, "run %d: interrupted before anything was read:\n%s", run, out)
		require.Contains(t, out, "agent tail: interrupted before the files were read", "run %d", run)
		require.NotContains(t, out, "nothing new to ship", "run %d", run)
	}
}
