// Command benche2e is the end-to-end benchmark behind `make bench-e2e`: it
// generates an access log, starts one cheap counting HTTP sink (sink.go) and,
// interleaved in each run, measures against it the floor (floor.go: the file
// POSTed in 1 MiB chunks by a process of its own) and
// `agent tail --once --from-beginning` in the rows text (ndjson of lines,
// --encoding text), json (--http-format json) and spool (text with
// --spool-bypass=false: every aggregate through the spool), all without
// compression. It prints MB/s, CPU seconds per GB (user+sys of the measured
// process, from rusage) and peak RSS per run and a table per row, and checks
// that every line arrived. -modes picks rows; -args adds agent flags.
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
//
// With -io-floor (`make bench-spool-floor`) no agent runs: it measures what
// writing and reading -size bytes through the page cache costs, the floor of
// the spool row, next to the spool package alone (see iofloor.go).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
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
	bareLog := flag.String("log", "", "internal: the log of -bare-producer or -floor")
	cpuprofile := flag.String("cpuprofile", "", "write the benchmark process's own CPU profile (its sinks and fakes) to this file")
	floorURL := flag.String("floor", "", "internal: POST -log to this URL in 1 MiB chunks (the floor row)")
	modes := flag.String("modes", "floor,text,json,spool", "rows to run, comma-separated: floor, text, json, spool")
	ioFloor := flag.Bool("io-floor", false, "measure the spool path's I/O floor instead (iofloor.go): page-cache writes and reads of -size bytes, and the spool package alone")
	ioFloorRow := flag.String("io-floor-child", "", "internal: run one -io-floor row in -dir")
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
	if *ioFloorRow != "" {
		if err := ioFloorChild(*ioFloorRow, *dir, *size); err != nil {
			fmt.Fprintln(os.Stderr, "bench-e2e: io floor:", err)
			os.Exit(1)
		}
		return
	}
	if *ioFloor {
		if err := runIOFloor(*dir, *size, *runs); err != nil {
			fmt.Fprintln(os.Stderr, "bench-e2e: io floor:", err)
			os.Exit(1)
		}
		return
	}
	if *floorURL != "" {
		if err := floor(*floorURL, *bareLog); err != nil {
			fmt.Fprintln(os.Stderr, "bench-e2e: floor:", err)
			os.Exit(1)
		}
		return
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
	if err := run(*agentBin, *size, *lineLen, *dir, *runs, *extra, *kafka, *kafkaParams, *socket, *modes); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

// row is one measured configuration of `make bench-e2e`.
type row struct {
	name string
	args []string // agent tail flags; nil for the floor
	note string
}

// httpRows are the rows of `make bench-e2e`, all against the same sink.
var httpRows = []row{
	{name: "floor", note: "read 1 MiB chunks, POST them (no line splitting)"},
	{name: "text", args: []string{"--http-format", "ndjson", "--encoding", "text", "--gzip=false"}, note: "ndjson of lines"},
	{name: "json", args: []string{"--http-format", "json", "--gzip=false"}, note: "a JSON array of {\"message\":line}"},
	{name: "spool", args: []string{"--http-format", "ndjson", "--encoding", "text", "--gzip=false", "--spool-bypass=false"}, note: "text through the spool (spool_bypass: false)"},
}

func run(agentBin string, size int64, lineLen int, dir string, runs int, extra string, kafka bool, kafkaParams string, socket bool, modes string) error {
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
	var rows []row
	for _, m := range strings.Split(modes, ",") {
		found := false
		for _, r := range httpRows {
			if r.name == strings.TrimSpace(m) {
				rows = append(rows, r)
				found = true
			}
		}
		if !found {
			return fmt.Errorf("-modes: unknown %q", m)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	sk, err := startSink()
	if err != nil {
		return err
	}
	defer sk.close()

	fmt.Printf("log: %s (%d MiB, %d lines of ~%d bytes)\n", log, size>>20, lines, lineLen)
	fmt.Printf("sink: bodies read into pooled buffers, %q counted once per line\n", lineToken)
	fmt.Printf("load average before: %s\n", loadAvg())
	all := make([][]result, len(rows))
	for i := 0; i < runs; i++ {
		// Rows interleaved, so that each run's rows share the machine's
		// load of the moment.
		for k, rw := range rows {
			sk.reset()
			var r result
			var err error
			if rw.args == nil {
				r, err = measure(exec.Command(self, "-floor", sk.url, "-log", log), size)
			} else {
				r, err = runOnce(agentBin, dir, log, size, nil, extra, append([]string{"--to", sk.url}, rw.args...)...)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", rw.name, err)
			}
			r.records = sk.records.Load()
			fmt.Printf("run %d %-6s %5.0f MB/s  %5.2f CPU-s/GB (user+sys %.2fs in %.2fs)  peak RSS %3d MiB  lines %d/%d  requests %d  cores busy %.2f of %d (sink %.2f)\n",
				i+1, rw.name, r.mbps, r.cpuPerG, r.cpu.Seconds(), r.wall.Seconds(), r.rss>>20, r.records, lines, sk.requests.Load(), r.machine, runtime.NumCPU(), r.sink)
			if r.records != lines {
				return fmt.Errorf("%s: %d of %d lines arrived", rw.name, r.records, lines)
			}
			all[k] = append(all[k], r)
		}
	}
	fmt.Printf("load average after: %s\n", loadAvg())
	var floorBest float64
	fmt.Printf("\n| row | MB/s (best) | CPU-s per GB (median) | peak RSS (max) | %% of the floor's MB/s |\n| --- | ---: | ---: | ---: | ---: |\n")
	for k, rw := range rows {
		best, med, rss := summarize(all[k])
		if rw.name == "floor" {
			floorBest = best
		}
		pct := "—"
		if floorBest > 0 && rw.name != "floor" {
			pct = fmt.Sprintf("%.0f%%", 100*best/floorBest)
		}
		fmt.Printf("| %s: %s | %.0f | %.2f | %d MiB | %s |\n", rw.name, rw.note, best, med, rss>>20, pct)
	}
	return nil
}

// summarize returns the best throughput, the median CPU per GB and the
// highest peak RSS of a row's runs.
func summarize(rs []result) (best, medianCPU float64, rss int64) {
	cpus := make([]float64, 0, len(rs))
	for _, r := range rs {
		best = max(best, r.mbps)
		rss = max(rss, r.rss)
		cpus = append(cpus, r.cpuPerG)
	}
	slices.Sort(cpus)
	if n := len(cpus); n%2 == 1 {
		medianCPU = cpus[n/2]
	} else {
		medianCPU = (cpus[n/2-1] + cpus[n/2]) / 2
	}
	return best, medianCPU, rss
}

// measure runs cmd and returns its throughput over size bytes, CPU time
// (user+sys, from rusage) and peak RSS.
func measure(cmd *exec.Cmd, size int64) (result, error) {
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start, b0 := time.Now(), takeBusy()
	if err := cmd.Run(); err != nil {
		return result{}, err
	}
	wall := time.Since(start)
	machine, sink := coresBusy(b0, takeBusy(), wall)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return result{
		wall: wall, cpu: cpu, rss: ru.Maxrss << 10, machine: machine, sink: sink,
		mbps:    float64(size) / 1e6 / wall.Seconds(),
		cpuPerG: cpu.Seconds() / (float64(size) / 1e9),
	}, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

type result struct {
	wall, cpu time.Duration
	rss       int64
	records   int64
	mbps      float64
	cpuPerG   float64
	// Cores the whole machine kept busy during the run, and of them the
	// benchmark's own process (the sink, or the floor program's parent).
	machine, sink float64
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
