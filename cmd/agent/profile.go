package main

import (
	"bytes"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// startProfile writes a CPU profile to $AGENT_CPUPROFILE and a heap profile
// to $AGENT_MEMPROFILE, and an execution trace to $AGENT_TRACE (`go tool
// trace`: where goroutines wait), when they are set (for benchmarks; see
// BENCHMARKS.md). The returned function stops them.
func startProfile() func() {
	stopCPU := startCPUProfile(os.Getenv("AGENT_CPUPROFILE"))
	stopMem := startMemProfile(os.Getenv("AGENT_MEMPROFILE"))
	stopTrace := startTrace(os.Getenv("AGENT_TRACE"))
	return func() { stopCPU(); stopMem(); stopTrace() }
}

func startTrace(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		return func() {}
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() { trace.Stop(); f.Close() }
}

func startCPUProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// startMemProfile writes to path the heap profile of the largest live heap
// seen (after a garbage collection): its inuse_space view shows what made
// the peak, its alloc_space view what the run had allocated by then. A heap
// profile describes the heap as of the cycle before the last completed one,
// so the snapshot is taken two cycles after the peak was seen.
func startMemProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	var best bytes.Buffer
	go func() {
		defer close(done)
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
		var peak, at uint64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			live, cycles := sample[0].Value.Uint64(), sample[1].Value.Uint64()
			if live > peak {
				peak, at = live, cycles+2
			}
			if at != 0 && cycles >= at {
				at = 0
				best.Reset()
				_ = pprof.Lookup("heap").WriteTo(&best, 0)
			}
			select {
			case <-stop:
				if best.Len() == 0 || at != 0 {
					best.Reset()
					_ = pprof.Lookup("heap").WriteTo(&best, 0)
				}
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		_ = os.WriteFile(path, best.Bytes(), 0o644)
	}
}
