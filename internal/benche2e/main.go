// Command benche2e is the end-to-end benchmark behind `make bench-e2e`: it
// generates an access log, starts a local HTTP sink, runs
// `agent tail --once --from-beginning` against it (ndjson, no compression)
// and prints MB/s shipped, CPU seconds per GB (user+sys of the agent
// process) and the agent's peak RSS. It checks that every line arrived.
//
// With -kinesis (`make bench-kinesis`) each run ships the log twice, to the
// HTTP sink and to an in-process fake Kinesis (ListShards and PutRecords
// over plain HTTP, counting and checking every record as a KCL would), with
// `--to kinesis://bench?endpoint=...&rate_limit=off`, and also reports the
// user records per Kinesis record and the PUT payload units per GB against
// one Kinesis record per line.
//
// With -kafka (`make bench-kafka`) the destination is a kfake broker in this
// process instead, next to a bare franz-go producer sending the same lines
// (see kafka.go).
//
// With -socket (`make bench-socket`) one client writes the log to
// `agent tail unix://… --to blackhole:` (see socket.go).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	agentBin := flag.String("agent", "bin/agent", "agent binary")
	size := flag.Int64("size", 512<<20, "log size in bytes")
	lineLen := flag.Int("line", 160, "average line length")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "agent-bench-e2e"), "work directory (the log is kept for reuse)")
	runs := flag.Int("runs", 3, "runs (the best is reported, as the page cache warms)")
	extra := flag.String("args", "", "extra agent tail flags")
	kin := flag.Bool("kinesis", false, "also ship to a fake Kinesis each run, and compare")
	shards := flag.Int("shards", 4, "shards of the fake Kinesis stream (-kinesis)")
	kinBaseline := flag.String("kinesis-baseline", "", "another agent binary (e.g. of the previous commit) shipped to the fake Kinesis in each run too, interleaved with -agent (-kinesis)")
	kinProtocols := flag.String("kinesis-protocols", "cbor", "PutRecords protocols to run with -kinesis, comma-separated (cbor, json, or default: the agent's default, without the URL key)")
	kafka := flag.Bool("kafka", false, "ship to an in-process kfake broker, next to a bare franz-go producer")
	socket := flag.Bool("socket", false, "one client writing the log to agent tail unix://… --to blackhole: (the spool path)")
	kafkaParams := flag.String("kafka-params", "", "query of the agent's kafka:// URL (e.g. compression=zstd)")
	bare := flag.String("bare-producer", "", "internal: produce -log to this kafka:// URL with franz-go alone")
	bareLog := flag.String("log", "", "internal: the log of -bare-producer")
	cpuprofile := flag.String("cpuprofile", "", "write the benchmark process's own CPU profile (its sinks and fakes) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-e2e:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *bare != "" {
		if err := bareProducer(*bare, *bareLog); err != nil {
			fmt.Fprintln(os.Stderr, "bench-e2e: bare producer:", err)
			os.Exit(1)
		}
		return
	}
	if *kin {
		if err := runKinesis(*agentBin, *kinBaseline, *size, *lineLen, *dir, *runs, *shards, *extra, strings.Split(*kinProtocols, ",")); err != nil {
			fmt.Fprintln(os.Stderr, "bench-kinesis:", err)
			pprof.StopCPUProfile()
			os.Exit(1)
		}
		return
	}
	if err := run(*agentBin, *size, *lineLen, *dir, *runs, *extra, *kafka, *kafkaParams, *socket); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

func run(agentBin string, size int64, lineLen int, dir string, runs int, extra string, kafka bool, kafkaParams string, socket bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	log := filepath.Join(dir, fmt.Sprintf("access-%d-%d.log", size, lineLen))
	lines, err := ensureLog(log, size, lineLen)
	if err != nil {
		return err
	}
	// Warm the page cache.
	if f, err := os.Open(log); err == nil {
		_, _ = io.Copy(io.Discard, f)
		f.Close()
	}
	if socket {
		return runSocket(agentBin, log, size, lines, dir, runs, extra)
	}
	if kafka {
		return runKafka(agentBin, log, size, lines, dir, runs, extra, kafkaParams)
	}
	var received, bytesIn atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 256<<10)
		var n int64
		var nl int64
		for {
			k, err := r.Body.Read(buf)
			n += int64(k)
			nl += int64(bytes.Count(buf[:k], []byte{'\n'}))
			if err != nil {
				break
			}
		}
		received.Add(nl)
		bytesIn.Add(n)
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/ingest"

	fmt.Printf("log: %s (%d MiB, %d lines of ~%d bytes)\n", log, size>>20, lines, lineLen)
	best := result{}
	for i := 0; i < runs; i++ {
		received.Store(0)
		bytesIn.Store(0)
		state, err := os.MkdirTemp(dir, "state-")
		if err != nil {
			return err
		}
		args := []string{"tail", log, "--once", "--from-beginning", "--to", url, "--http-format", "ndjson", "--gzip=false", "--quiet", "--state-dir", state}
		if extra != "" {
			for _, a := range bytes.Fields([]byte(extra)) {
				args = append(args, string(a))
			}
		}
		cmd := exec.Command(agentBin, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			os.RemoveAll(state)
			return fmt.Errorf("agent: %w", err)
		}
		wall := time.Since(start)
		os.RemoveAll(state)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r := result{
			wall: wall, cpu: cpu, rss: ru.Maxrss << 10,
			mbps:    float64(size) / 1e6 / wall.Seconds(),
			cpuPerG: cpu.Seconds() / (float64(size) / 1e9),
		}
		got := received.Load()
		fmt.Printf("run %d: %.0f MB/s  %.2f CPU-s/GB (user+sys %.2fs in %.2fs)  peak RSS %d MiB  lines %d/%d\n",
			i+1, r.mbps, r.cpuPerG, cpu.Seconds(), wall.Seconds(), r.rss>>20, got, lines)
		if got < lines {
			return fmt.Errorf("only %d of %d lines arrived", got, lines)
		}
		if r.mbps > best.mbps {
			best = r
		}
	}
	fmt.Printf("best: %.0f MB/s, %.2f CPU-seconds per GB, peak RSS %d MiB\n", best.mbps, best.cpuPerG, best.rss>>20)
	return nil
}

type result struct {
	wall, cpu time.Duration
	rss       int64
	records   int64
	mbps      float64
	cpuPerG   float64
}

// ensureLog writes an access log of about size bytes unless it exists.
func ensureLog(path string, size int64, lineLen int) (int64, error) {
	if st, err := os.Stat(path); err == nil && st.Size() >= size {
		return countLines(path)
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(42, 42))
	paths := []string{"/", "/index.html", "/api/v1/orders", "/api/v1/users/42/profile", "/static/js/app.3f9a1c.js", "/healthz", "/login", "/search?q=kinesis+agent"}
	agents := []string{"curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "kube-probe/1.30", "Go-http-client/1.1"}
	var written, lines int64
	buf := make([]byte, 0, 512)
	for written < size {
		buf = fmt.Appendf(buf[:0], `10.%d.%d.%d - - [26/Nov/2026:20:%02d:%02d +0000] "%s %s HTTP/1.1" %d %d "-" "%s"`,
			rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(60), rng.IntN(60),
			[]string{"GET", "GET", "POST", "PUT"}[rng.IntN(4)], paths[rng.IntN(len(paths))],
			[]int{200, 200, 201, 304, 404, 500}[rng.IntN(6)], rng.IntN(50000), agents[rng.IntN(len(agents))])
		for len(buf) < lineLen-1+rng.IntN(9)-4 {
			buf = append(buf, ' ')
		}
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			return 0, err
		}
		written += int64(len(buf))
		lines++
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return lines, os.Rename(path+".tmp", path)
}

func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}
