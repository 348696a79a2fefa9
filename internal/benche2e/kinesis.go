package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/kplagent/agent/internal/fakeaws"
)

// runKinesis ships the log to the HTTP sink (ndjson, no compression) and to
// a fake Kinesis, once per PutRecords protocol of protocols, in each run,
// and prints them and their ratios. With baseline set, that agent binary
// ships to the fake Kinesis too, in each run, just before agentBin.
func runKinesis(agentBin, baseline string, size int64, lineLen int, dir string, runs, shards int, extra string, protocols []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	log := filepath.Join(dir, fmt.Sprintf("access-%d-%d.log", size, lineLen))
	lines, err := ensureLog(log, size, lineLen)
	if err != nil {
		return err
	}
	if f, err := os.Open(log); err == nil {
		_, _ = io.Copy(io.Discard, f)
		f.Close()
	}

	// The HTTP sink, as in run.
	var received atomic.Int64
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 256<<10)
		var nl int64
		for {
			k, err := r.Body.Read(buf)
			nl += int64(bytes.Count(buf[:k], []byte{'\n'}))
			if err != nil {
				break
			}
		}
		received.Add(nl)
		w.WriteHeader(http.StatusNoContent)
	})}
	go hsrv.Serve(hln)
	defer hsrv.Close()
	httpURL := "http://" + hln.Addr().String() + "/ingest"

	// The fake Kinesis, a new stream per run.
	var fk atomic.Pointer[fakeaws.Kinesis]
	kln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ksrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fk.Load().ServeHTTP(w, r) })}
	go ksrv.Serve(kln)
	defer ksrv.Close()
	kinURL := "kinesis://bench?region=us-east-1&rate_limit=off&endpoint=" + url.QueryEscape("http://"+kln.Addr().String())
	env := []string{"AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench", "AWS_EC2_METADATA_DISABLED=true"}
	for _, kv := range os.Environ() {
		if len(kv) < 4 || kv[:4] != "AWS_" {
			env = append(env, kv)
		}
	}

	fmt.Printf("log: %s (%d MiB, %d lines of ~%d bytes); fake Kinesis of %d shards\n", log, size>>20, lines, lineLen, shards)
	var hres []result
	kres := map[string][]result{}
	bres := map[string][]result{} // baseline's
	var kst []fakeaws.KinesisStats
	for i := 0; i < runs; i++ {
		received.Store(0)
		r, err := runOnce(agentBin, dir, log, size, nil, extra, "--to", httpURL, "--http-format", "ndjson", "--gzip=false")
		if err != nil {
			return err
		}
		if got := received.Load(); got < lines {
			return fmt.Errorf("http: only %d of %d lines arrived", got, lines)
		}
		hres = append(hres, r)
		fmt.Printf("run %d http:    %4.0f MB/s  %.2f CPU-s/GB  peak RSS %d MiB\n", i+1, r.mbps, r.cpuPerG, r.rss>>20)

		for _, proto := range protocols {
			to := kinURL + "&protocol=" + proto
			if proto == "default" { // the agent's default (also for agents without the key)
				to = kinURL
			}
			if baseline != "" {
				k := fakeaws.NewKinesis(shards)
				fk.Store(k)
				r, err := runOnce(baseline, dir, log, size, env, extra, "--to", to)
				if err != nil {
					return fmt.Errorf("baseline: %w", err)
				}
				if err := checkKinesis(k, lines); err != nil {
					return fmt.Errorf("baseline: %w", err)
				}
				bres[proto] = append(bres[proto], r)
				fmt.Printf("run %d kinesis %s, baseline: %4.0f MB/s  %.2f CPU-s/GB  peak RSS %d MiB\n", i+1, proto, r.mbps, r.cpuPerG, r.rss>>20)
			}
			k := fakeaws.NewKinesis(shards)
			fk.Store(k)
			r, err = runOnce(agentBin, dir, log, size, env, extra, "--to", to)
			if err != nil {
				return err
			}
			if err := checkKinesis(k, lines); err != nil {
				return err
			}
			st := k.Stats()
			kres[proto] = append(kres[proto], r)
			kst = append(kst, st)
			fmt.Printf("run %d kinesis %s: %4.0f MB/s  %.2f CPU-s/GB  peak RSS %d MiB  %d Kinesis records (%.0f user records each), %d PutRecords, %d payload units\n",
				i+1, proto, r.mbps, r.cpuPerG, r.rss>>20, st.Records, float64(st.UserRecords)/float64(st.Records), st.PutRecords, st.PayloadUnits)
		}
	}
	gb := float64(size) / 1e9
	med := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	mbps := func(r result) float64 { return r.mbps }
	cpu := func(r result) float64 { return r.cpuPerG }
	rss := func(r result) float64 { return float64(r.rss >> 20) }
	st := kst[len(kst)-1]
	perLine := float64(lines) / gb // one record of ~lineLen bytes per line: one payload unit each
	units := float64(st.PayloadUnits) / gb
	fmt.Printf("\nmedians of %d runs:\n\n", runs)
	fmt.Println("| | MB/s | CPU-s per GB | peak RSS | user records per Kinesis record | PUT payload units per GB |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	fmt.Printf("| http ndjson | %.0f | %.2f | %.0f MiB | | |\n", med(hres, mbps), med(hres, cpu), med(hres, rss))
	for _, proto := range protocols {
		if baseline != "" {
			fmt.Printf("| baseline: kinesis %s | %.0f | %.2f | %.0f MiB | | |\n", proto, med(bres[proto], mbps), med(bres[proto], cpu), med(bres[proto], rss))
		}
		fmt.Printf("| kinesis %s (rate_limit=off) | %.0f | %.2f | %.0f MiB | %.0f | %.0f |\n", proto, med(kres[proto], mbps), med(kres[proto], cpu), med(kres[proto], rss),
			float64(st.UserRecords)/float64(st.Records), units)
	}
	fmt.Printf("| one Kinesis record per line | | | | 1 | %.0f |\n", perLine)
	fmt.Println()
	for _, proto := range protocols {
		if baseline != "" {
			fmt.Printf("baseline: kinesis %s/http CPU per GB: %.2fx\n", proto, med(bres[proto], cpu)/med(hres, cpu))
		}
		fmt.Printf("kinesis %s/http CPU per GB: %.2fx (target <= 1.5x)\n", proto, med(kres[proto], cpu)/med(hres, cpu))
	}
	fmt.Printf("payload units: %.0fx fewer than one record per line (target >= 50x)\n", perLine/units)
	return nil
}

// checkKinesis checks that every line arrived at k, each in its shard's
// hash key range.
func checkKinesis(k *fakeaws.Kinesis, lines int64) error {
	if st := k.Stats(); st.UserRecords < lines {
		return fmt.Errorf("kinesis: only %d of %d lines arrived", st.UserRecords, lines)
	}
	if v := k.Violations(); len(v) > 0 {
		return fmt.Errorf("kinesis: %d sub-records a KCL would drop (first: %s)", len(v), v[0])
	}
	return nil
}

// runOnce runs agent tail --once on log with args and returns its measures.
func runOnce(agentBin, dir, log string, size int64, env []string, extra string, args ...string) (result, error) {
	state, err := os.MkdirTemp(dir, "state-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(state)
	all := append([]string{"tail", log, "--once", "--from-beginning", "--quiet", "--state-dir", state}, args...)
	for _, a := range bytes.Fields([]byte(extra)) {
		all = append(all, string(a))
	}
	cmd := exec.Command(agentBin, all...)
	cmd.Env = env
	r, err := measure(cmd, size)
	if err != nil {
		return result{}, fmt.Errorf("agent %v: %w", args, err)
	}
	return r, nil
}
