package main

import (
	"os"
	"runtime/pprof"
)

// startProfile writes a CPU profile to $AGENT_CPUPROFILE when it is set (for
// benchmarks; see BENCHMARKS.md). The returned function stops it.
func startProfile() func() {
	path := os.Getenv("AGENT_CPUPROFILE")
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
