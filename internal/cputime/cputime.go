// Package cputime measures CPU time for tests and benchmarks: the CPU time
// of the calling OS thread (CLOCK_THREAD_CPUTIME_ID) and of the whole
// process (getrusage). Unlike wall time, neither counts the time other
// processes of a shared, loaded machine run instead, so ratios and budgets
// measured with them hold on a busy CI machine.
//
// Only tests and benchmarks import it; the agent's own code does not.
package cputime

import "time"

// wallBase is the origin of Clock's wall-time fallback (monotonic).
var wallBase = time.Now()

// Thread returns the CPU time the calling OS thread has used, and false
// where the system does not tell it (then the duration is 0). The caller
// locks its goroutine to its thread (runtime.LockOSThread) for the
// difference of two readings to mean anything.
func Thread() (time.Duration, bool) { return thread() }

// Clock returns the calling thread's CPU time where the system tells it,
// and the wall time since an arbitrary origin otherwise: the difference of
// two readings on one locked thread is the CPU time (or, in the fallback,
// the wall time) spent between them. Whether the system tells thread CPU
// time does not change while a process runs, so two readings are always of
// the same kind.
func Clock() time.Duration {
	if d, ok := thread(); ok {
		return d
	}
	return time.Since(wallBase)
}

// Process returns the user plus system CPU time of the whole process (all
// its threads, getrusage RUSAGE_SELF).
func Process() (time.Duration, error) { return process() }
