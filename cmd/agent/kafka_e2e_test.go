package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/testport"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kplagent/agent/outputs/kafka/kafkatest"
)

// The Kafka end-to-end tests run the agent binary against kfake brokers
// started in the test process (the real wire protocol) and read the topic
// back with a franz-go consumer.

const kafkaTopic = "logs"

// kafkaLineSize keeps lines short: the big test is about records, not bytes.
const kafkaLineSize = 60

// Line counts: the race detector makes the agent several times slower, so
// its builds ship fewer lines.
var (
	kafkaBigLines   = raceOr(500_000, 100_000)
	kafkaCodecLines = raceOr(20_000, 5_000)
)

func raceOr(normal, race int) int {
	if raceEnabled {
		return race
	}
	return normal
}

func freePortNum(t *testing.T) int {
	t.Helper()
	return testport.Port(t)
}

// kafkaLine is the value of line i as the agent sends it (no newline).
func kafkaLine(i int) string {
	return strings.TrimSuffix(string(numberedLine(nil, i, kafkaLineSize)), "\n")
}

func kafkaURL(c *kfake.Cluster, params string) string {
	u := "kafka://" + strings.Join(c.ListenAddrs(), ",") + "/" + kafkaTopic
	if params != "" {
		u += "?" + params
	}
	return u
}

// readBackOnce reads n records of the topic and requires each line once.
func readBackOnce(t *testing.T, brokers []string, n int) []kafkatest.Record {
	t.Helper()
	got := kafkatest.ReadAll(t, brokers, kafkaTopic, n, 2*time.Minute)
	require.NoError(t, kafkatest.CheckOnce(got, n, kafkaLine))
	return got
}

func TestTailOnce_Kafka500kLinesArriveExactlyOnce(t *testing.T) {
	t.Parallel()
	n := kafkaBigLines
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, kafkaLineSize)
	c := kafkatest.Start(t, kafkaTopic, 3)
	start := time.Now()
	p := startAgent(t, "tail", log, "--once", "--to", kafkaURL(c, ""), "--state-dir", filepath.Join(dir, "state"))
	require.Equal(t, 0, p.wait(t, 3*time.Minute), p.stderr.String())
	t.Logf("%d lines shipped in %s", n, time.Since(start).Round(time.Millisecond))
	got := readBackOnce(t, c.ListenAddrs(), n)
	parts := map[int32]int{}
	for _, r := range got {
		parts[r.Partition]++
	}
	require.Len(t, parts, 3, "random partition keys spread the records over the 3 partitions")
}

func TestTailOnce_KafkaEveryCompressionCodec(t *testing.T) {
	t.Parallel()
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			t.Parallel()
			n := kafkaCodecLines
			dir := t.TempDir()
			log := filepath.Join(dir, "app.log")
			writeLog(t, log, 0, n, kafkaLineSize)
			c := kafkatest.Start(t, kafkaTopic, 3)
			p := startAgent(t, "tail", log, "--once", "--to", kafkaURL(c, "compression="+codec), "--state-dir", filepath.Join(dir, "state"))
			require.Equal(t, 0, p.wait(t, 2*time.Minute), p.stderr.String())
			readBackOnce(t, c.ListenAddrs(), n)
		})
	}
}

// With --partition-key deterministic the Kafka key is a hash of the line:
// each record lands on the partition the Java client's default partitioner
// picks for its key, computed here independently of franz-go.
func TestTailOnce_KafkaKeyedRecordsLandWhereJavaPutsThem(t *testing.T) {
	t.Parallel()
	const n = 5000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, kafkaLineSize)
	c := kafkatest.Start(t, kafkaTopic, 3)
	p := startAgent(t, "tail", log, "--once", "--partition-key", "deterministic", "--to", kafkaURL(c, ""), "--state-dir", filepath.Join(dir, "state"))
	require.Equal(t, 0, p.wait(t, 2*time.Minute), p.stderr.String())
	got := readBackOnce(t, c.ListenAddrs(), n)
	parts, keys := map[int32]int{}, map[string]bool{}
	for _, r := range got {
		require.NotEmpty(t, r.Key)
		require.Equal(t, kafkatest.JavaPartition(r.Key, 3), r.Partition, "key %q", r.Key)
		parts[r.Partition]++
		keys[r.Key] = true
	}
	require.Len(t, parts, 3)
	require.Greater(t, len(keys), n/2, "keys are hashes of distinct lines")
}

// The broker answers REQUEST_TIMED_OUT to several produce requests (after
// appending them, as a broker whose replicas were slow), then stops for 20 s
// mid-stream and restarts on the same port with the same data directory,
// while lines keep coming. Every line arrives once, and the backlog of the
// outage waits in the spool: the agent's heap does not grow with it. (The
// one long test of the package: it runs in parallel with the others.)
func TestTail_KafkaTimeoutsAndBrokerStopped20sMidStream_NothingLostNoDuplicatesMemoryFlat(t *testing.T) {
	t.Parallel()
	const (
		chunks = 60
		every  = 400 * time.Millisecond // lines keep coming for 24 s
		outage = 20 * time.Second
	)
	n := raceOr(500_000, 120_000)
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	data := filepath.Join(dir, "kfake")
	port := freePortNum(t)
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(data), kfake.SeedTopics(3, kafkaTopic)}
	c1, err := kfake.NewCluster(opts...)
	require.NoError(t, err)
	brokers := c1.ListenAddrs()
	h := c1.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 5})
	admin := freeAddr(t)
	p := startAgent(t, "tail", log, "--from-beginning", "--to", kafkaURL(c1, ""),
		"--state-dir", filepath.Join(dir, "state"), "--admin", admin, "--log-level", "error")
	var wg sync.WaitGroup
	wg.Go(func() {
		for k := range chunks {
			writeLog(t, log, k*n/chunks, (k+1)*n/chunks, kafkaLineSize)
			time.Sleep(every)
		}
	})
	require.Eventually(t, func() bool { return metric(admin, "agent_kafka_records_produced_total") >= float64(n/30) },
		time.Minute, 20*time.Millisecond, "records were produced before the stop")
	require.EqualValues(t, 5, h.Hits(), "the REQUEST_TIMED_OUT faults were hit")
	c1.Close()
	// During the outage: the heap's high-water mark of its second half
	// against its first, next to what the spool took meanwhile.
	var heap [2]float64
	var spool [2]float64
	start := time.Now()
	for half := range 2 {
		for time.Since(start) < time.Duration(half+1)*outage/2 {
			heap[half] = max(heap[half], metric(admin, "go_memstats_heap_inuse_bytes"))
			time.Sleep(100 * time.Millisecond)
		}
		spool[half] = metric(admin, "agent_spool_bytes")
	}
	grew := spool[1] - spool[0]
	t.Logf("outage: heap in use at most %.1f MiB (first 10 s), %.1f MiB (last 10 s); the spool grew by %.1f MiB in the last 10 s",
		heap[0]/(1<<20), heap[1]/(1<<20), grew/(1<<20))
	if !raceEnabled { // the race build ships too few lines for a backlog that tells
		require.Greater(t, grew, float64(6<<20), "the backlog went to the spool")
		require.Less(t, heap[1], heap[0]+grew/2, "the heap did not grow with the backlog")
	}
	var c2 *kfake.Cluster
	require.Eventually(t, func() bool { // the port may take a moment to be free
		c2, err = kfake.NewCluster(opts...)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	t.Cleanup(c2.Close)
	wg.Wait()
	readBackOnce(t, brokers, n)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
}

// A missing topic is retried (not dead-lettered) until it is created.
func TestTailOnce_KafkaTopicMissingThenCreated_Delivered(t *testing.T) {
	t.Parallel()
	const n = 2000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, kafkaLineSize)
	c := kafkatest.Start(t, "", 0)
	admin := freeAddr(t)
	p := startAgent(t, "tail", log, "--once", "--to", kafkaURL(c, ""), "--state-dir", filepath.Join(dir, "state"), "--admin", admin)
	require.Eventually(t, func() bool { return metric(admin, "agent_kafka_produce_errors_total") > 0 },
		time.Minute, 50*time.Millisecond, "the missing topic was reported")
	require.NoError(t, c.CreateTopic(kafkaTopic, 3, nil))
	require.Equal(t, 0, p.wait(t, 2*time.Minute), p.stderr.String())
	readBackOnce(t, c.ListenAddrs(), n)
}

// A line larger than the topic's max.message.bytes is dead-lettered alone:
// the other lines of its aggregate are delivered, and --once exits 1.
func TestTailOnce_KafkaLineTooLargeIsDeadLetteredAlone(t *testing.T) {
	t.Parallel()
	const n, big = 300, 137
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, big, kafkaLineSize)
	writeLog(t, log, big, big+1, 5000)
	writeLog(t, log, big+1, n, kafkaLineSize)
	c := kafkatest.Start(t, "", 0)
	require.NoError(t, c.CreateTopic(kafkaTopic, 1, map[string]string{"max.message.bytes": "2000"}))
	state := filepath.Join(dir, "state")
	_, errOut, code := runBin(t, "tail", "--once", log, "--to", kafkaURL(c, "compression=none"), "--state-dir", state)
	require.Equal(t, 1, code, errOut)
	got := kafkatest.ReadAll(t, c.ListenAddrs(), kafkaTopic, n-1, time.Minute)
	require.NoError(t, kafkatest.CheckOnce(got, n-1, func(i int) string {
		if i >= big {
			i++ // every line but the big one
		}
		return kafkaLine(i)
	}))
	out, errOut, code := runBin(t, "dead-letter", "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 1, strings.Count(out, "MESSAGE_TOO_LARGE"), out)
	require.Contains(t, out, "L00000137")
	require.NotContains(t, out, "L00000136")
	require.NotContains(t, out, "L00000138")
}

// A broker that takes produce requests and does not answer: before the
// send's timeout ends the wait, `agent status` shows the output stalled
// and the log warns (once) that the send waits, naming its send_timeout.
func TestTail_KafkaBrokerNotAnswering_StalledInStatusAndWarned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, kafkaTopic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	var produces atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		produces.Add(1)
		return nil, nil, true // read and never answered
	})
	writeLog(t, log, 0, 100, kafkaLineSize)
	admin := freeAddr(t)
	p := startAgent(t, "tail", log, "--to", kafkaURL(c, "send_timeout=4s"), "--state-dir", filepath.Join(dir, "state"), "--admin", admin)
	p.waitFor(t, time.Minute, func() bool { return produces.Load() > 0 }, "no produce request reached the broker")
	p.waitFor(t, time.Minute, func() bool {
		out, err := agentCmd("status", "--admin", admin).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return regexp.MustCompile(`(?m)^\S+\s+kafka\s+stalled \(sending for \d+s\)`).MatchString(string(out))
	}, "agent status never showed the kafka output stalled")
	p.waitFor(t, time.Minute, func() bool { return strings.Contains(p.output(), "has not answered a send for long") }, "no warning")
	require.Regexp(t, `has not answered a send for long.*output=\S+ waiting=\d+s sends_in_flight=\d+ timeout=4s`, p.output())
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
	require.Equal(t, 1, strings.Count(p.output(), "has not answered a send for long"), p.output())
}

// A broker that refuses the agent's SASL credentials (kfake closes the
// connection, as brokers without SaslAuthenticate v1 do): the log and
// agent status say that the authentication was refused, naming the
// mechanism and the user, not that the broker is unreachable with a bare
// EOF; the password is never shown.
func TestTail_KafkaSASLRefused_SaysSo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 50, kafkaLineSize)
	c := kafkatest.Start(t, kafkaTopic, 1, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "agent", "s3cret"))
	admin := freeAddr(t)
	u := strings.Replace(kafkaURL(c, "sasl=SCRAM-SHA-256&send_timeout=2s"), "kafka://", "kafka://agent:wr0ng-pass@", 1)
	p := startAgent(t, "tail", log, "--to", u, "--state-dir", filepath.Join(dir, "state"), "--admin", admin)
	p.waitFor(t, time.Minute, func() bool { return strings.Contains(p.output(), "send failed") }, "no send failed")
	require.Regexp(t, `kafka: broker \S+ refused the SASL authentication \(SCRAM-SHA-256 as user agent\)`, p.output())
	require.NotContains(t, p.output(), "unreachable: EOF")
	out, err := agentCmd("status", "--admin", admin).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "refused the SASL")
	require.NotContains(t, p.output()+string(out), "wr0ng-pass")
	require.NoError(t, p.cmd.Process.Kill()) // how it stops is not the point
	p.wait(t, time.Minute)
}

// A user the broker does not let initialise an idempotent producer (no
// WRITE on any topic on Kafka 3.0+; no IDEMPOTENT_WRITE on the cluster on
// older Kafka, or on Amazon MSK with IAM without
// kafka-cluster:WriteDataIdempotently): the idempotent producer (the
// default) is refused with CLUSTER_AUTHORIZATION_FAILED, which names no
// topic; the log says what the producer needs and the ways out. With
// idempotent=false the refusal is the topic's own.
func TestTail_KafkaIdempotentProducerNotAuthorized_SaysWhatToGrant(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 20, kafkaLineSize)
	c := kafkatest.Start(t, kafkaTopic, 1, kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser("SCRAM-SHA-256", "admin", "x"),
		kfake.User("SCRAM-SHA-256", "agent", "s3cret", kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: kafkaTopic,
			Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationDescribe, Allow: true}))
	u := strings.Replace(kafkaURL(c, "sasl=SCRAM-SHA-256&send_timeout=2s"), "kafka://", "kafka://agent:s3cret@", 1)
	const hint = `hint="the idempotent producer (idempotent: true, the default) needs WRITE on the topic (Kafka 3.0+) or ` +
		`IDEMPOTENT_WRITE on the cluster (older Kafka; Amazon MSK with IAM: kafka-cluster:WriteDataIdempotently): ` +
		`grant it, or set idempotent: false"`
	for _, tc := range []struct{ params, code string }{{"", "CLUSTER_AUTHORIZATION_FAILED"}, {"&idempotent=false", "TOPIC_AUTHORIZATION_FAILED"}} {
		p := startAgent(t, "tail", log, "--to", u+tc.params, "--state-dir", filepath.Join(dir, "state"))
		p.waitFor(t, time.Minute, func() bool { return strings.Contains(p.output(), "code="+tc.code) }, "no "+tc.code)
		require.NoError(t, p.cmd.Process.Kill()) // how it stops is not the point
		p.wait(t, time.Minute)
		if tc.params == "" {
			require.Contains(t, p.output(), hint)
		} else {
			require.NotContains(t, p.output(), "hint=")
		}
	}
}

// Kafka's own spellings of acks (-1, 1, 0, as the Java client's acks=) are
// the names all, leader and none: they were refused ("want all, leader or
// none") in kafka:// and in the config file.
func TestTailOnce_KafkaAcksInKafkasSpelling(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ acks, params, warn string }{
		{"-1", "acks=-1", ""},
		{"1", "acks=1&idempotent=false", ""},
		{"0", "acks=0&idempotent=false", "acks: none: records are reported delivered without any acknowledgement"},
	} {
		t.Run(tc.acks, func(t *testing.T) {
			t.Parallel()
			const n = 200
			dir := t.TempDir()
			log := filepath.Join(dir, "app.log")
			writeLog(t, log, 0, n, kafkaLineSize)
			c := kafkatest.Start(t, kafkaTopic, 1)
			p := startAgent(t, "tail", log, "--once", "--to", kafkaURL(c, tc.params), "--state-dir", filepath.Join(dir, "state"))
			require.Equal(t, 0, p.wait(t, 2*time.Minute), p.stderr.String())
			readBackOnce(t, c.ListenAddrs(), n)
			if tc.warn != "" {
				require.Contains(t, p.stderr.String(), tc.warn)
			}
		})
	}
	dir := t.TempDir()
	cfg := func(acks, idempotent string) string {
		p := filepath.Join(dir, "acks"+acks+idempotent+".yaml")
		require.NoError(t, os.WriteFile(p, []byte(`state_dir: `+dir+`
sources:
  - {name: app, type: file, file: {include: [`+dir+`/*.log]}}
outputs:
  - {name: k, type: kafka, kafka: {brokers: [127.0.0.1:9092], topic: logs, acks: `+acks+`, idempotent: `+idempotent+`}}
flows:
  - {name: main, sources: [app], output: k}
`), 0o600))
		return p
	}
	for _, acks := range []string{"-1", "1", "0", `"1"`} {
		idem := "false"
		if acks == "-1" {
			idem = "true"
		}
		_, errOut, code := runBin(t, "validate", "-c", cfg(acks, idem))
		require.Equal(t, 0, code, "acks: %s: %s", acks, errOut)
	}
	_, errOut, code := runBin(t, "validate", "-c", cfg("1", "true"))
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "acks: 1 (leader) needs idempotent: false")
	_, errOut, code = runBin(t, "validate", "-c", cfg("2", "false"))
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, `acks: unknown "2" (want all, leader or none; or Kafka's -1, 1 or 0)`)
}
