package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The Kafka benchmark (-kafka, `make bench-kafka`) ships the same log to a
// kfake broker in this process (3 partitions) twice per run: with
// `agent tail --once --to kafka://…` (its defaults: lz4, linger 5ms, acks
// all, idempotent, client metrics off, concurrency 2), and with a bare
// franz-go producer of the same settings
// (this program re-run with -bare-producer, so its CPU and RSS are its own).
// The bare producer is the ceiling of client and broker on this machine.
// kfake's CPU and memory are this process's, in neither figure.

const (
	kafkaTopic      = "bench"
	kafkaPartitions = 3
	// bareKeyEvery gives the bare producer a new random 16-hex-digit key
	// every so many lines, as the agent's partition_key random does per
	// aggregate (51200 bytes of ~160-byte lines).
	bareKeyEvery = 300
)

func runKafka(agentBin, log string, size, lines int64, dir string, runs int, extra, params string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("log: %s (%d MiB, %d lines); kfake in process, %d partitions, lz4\n", log, size>>20, lines, kafkaPartitions)
	var bestAgent, bestBare result
	for i := 0; i < runs; i++ {
		state, err := os.MkdirTemp(dir, "state-")
		if err != nil {
			return err
		}
		agent, err := kafkaRun(lines, size, func(url string) *exec.Cmd {
			if params != "" {
				url += "?" + params
			}
			args := []string{"tail", log, "--once", "--from-beginning", "--to", url, "--quiet", "--state-dir", state}
			args = append(args, strings.Fields(extra)...)
			return exec.Command(agentBin, args...)
		})
		os.RemoveAll(state)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		agent.print(fmt.Sprintf("run %d agent", i+1), lines)
		bare, err := kafkaRun(lines, size, func(url string) *exec.Cmd {
			return exec.Command(self, "-bare-producer", url, "-log", log)
		})
		if err != nil {
			return fmt.Errorf("bare producer: %w", err)
		}
		bare.print(fmt.Sprintf("run %d bare", i+1), lines)
		if agent.mbps > bestAgent.mbps {
			bestAgent = agent
		}
		if bare.mbps > bestBare.mbps {
			bestBare = bare
		}
	}
	fmt.Println()
	fmt.Println("| | MB/s | CPU-s/GB | peak RSS |")
	fmt.Println("|---|---:|---:|---:|")
	fmt.Printf("| agent tail --to kafka:// | %.0f | %.2f | %d MiB |\n", bestAgent.mbps, bestAgent.cpuPerG, bestAgent.rss>>20)
	fmt.Printf("| bare franz-go producer | %.0f | %.2f | %d MiB |\n", bestBare.mbps, bestBare.cpuPerG, bestBare.rss>>20)
	fmt.Printf("agent/bare throughput: %.0f%%\n", 100*bestAgent.mbps/bestBare.mbps)
	return nil
}

func (r result) print(label string, lines int64) {
	fmt.Printf("%s: %.0f MB/s  %.2f CPU-s/GB (user+sys %.2fs in %.2fs)  peak RSS %d MiB  records %d/%d\n",
		label, r.mbps, r.cpuPerG, r.cpu.Seconds(), r.wall.Seconds(), r.rss>>20, r.records, lines)
}

// kafkaRun starts a fresh broker, runs the command made for its URL and
// checks that the topic holds every line once.
func kafkaRun(lines, size int64, mk func(url string) *exec.Cmd) (result, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(kafkaPartitions, kafkaTopic))
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	url := "kafka://" + strings.Join(c.ListenAddrs(), ",") + "/" + kafkaTopic
	cmd := mk(url)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	// The child's rusage Maxrss counts this process's RSS at fork (Linux
	// keeps the larger of the forked and the exec'd memory's high-water
	// mark), and this process holds kfake's data: read the child's own
	// VmHWM instead while it runs.
	peak := pollHWM(cmd.Process.Pid)
	err = cmd.Wait()
	rss := peak()
	if err != nil {
		return result{}, err
	}
	wall := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	r := result{
		wall: wall, cpu: cpu, rss: rss,
		mbps:    float64(size) / 1e6 / wall.Seconds(),
		cpuPerG: cpu.Seconds() / (float64(size) / 1e9),
	}
	r.records, err = topicRecords(c.ListenAddrs())
	if err != nil {
		return r, err
	}
	if r.records != lines {
		return r, fmt.Errorf("the topic holds %d records, want %d", r.records, lines)
	}
	return r, nil
}

// topicRecords sums the partitions' end offsets (the idempotent producer's
// retries are not appended twice, so this is the records written).
func topicRecords(brokers []string) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	req := kmsg.NewPtrListOffsetsRequest()
	t := kmsg.NewListOffsetsRequestTopic()
	t.Topic = kafkaTopic
	for p := range int32(kafkaPartitions) {
		pp := kmsg.NewListOffsetsRequestTopicPartition()
		pp.Partition, pp.Timestamp = p, -1 // latest
		t.Partitions = append(t.Partitions, pp)
	}
	req.Topics = append(req.Topics, t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 {
				return 0, fmt.Errorf("list offsets %s/%d: error %d", rt.Topic, rp.Partition, rp.ErrorCode)
			}
			n += rp.Offset
		}
	}
	return n, nil
}

// bareProducer sends every line of log to url (kafka://HOST:PORT/TOPIC)
// with franz-go and the agent's default producer settings, then flushes.
func bareProducer(url, log string) error {
	rest, ok := strings.CutPrefix(url, "kafka://")
	host, topic, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return fmt.Errorf("want kafka://HOST:PORT/TOPIC, got %s", url)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(host, ",")...),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1000012),
		kgo.MaxBufferedBytes(64<<20),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DisableClientMetrics(), // the agent's default (client_metrics: false)
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	f, err := os.Open(log)
	if err != nil {
		return err
	}
	defer f.Close()
	var failed atomic.Int64
	var firstErr atomic.Value
	promise := func(_ *kgo.Record, err error) {
		if err != nil && failed.Add(1) == 1 {
			firstErr.Store(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var key []byte
	rd := bufio.NewReaderSize(f, 1<<20)
	ctx := context.Background()
	for n := 0; ; n++ {
		line, err := rd.ReadSlice('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		}
		if len(line) > 0 {
			if n%bareKeyEvery == 0 {
				var raw [8]byte
				for i := range raw {
					raw[i] = byte(rng.Uint32())
				}
				key = []byte(hex.EncodeToString(raw[:]))
			}
			cl.Produce(ctx, &kgo.Record{Key: key, Value: append([]byte(nil), line...)}, promise)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d records failed: %v", n, firstErr.Load())
	}
	return nil
}

// pollHWM samples the peak RSS of process pid (vmHWM) every 20 ms until the
// returned function is called; that returns the highest value seen (later
// calls return it again).
func pollHWM(pid int) func() int64 {
	var hwm atomic.Int64
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v := vmHWM(pid); v > hwm.Load() {
				hwm.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() int64 {
		once.Do(func() { close(stop); <-polled })
		return hwm.Load()
	}
}

// vmHWM returns the peak RSS of process pid (VmHWM in /proc/PID/status), 0
// when it cannot be read (the process is gone).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10 // kB
			}
		}
	}
	return 0
}
