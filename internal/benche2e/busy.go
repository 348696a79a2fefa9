package main

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// busy is a snapshot of what the whole machine and this process (the sink
// lives here) have spent, for telling a run limited by CPU from one that
// waits: a row whose machine was not busy for the whole run stalled
// somewhere.
type busy struct {
	total, idle uint64 // /proc/stat "cpu" line, in clock ticks
	self        time.Duration
}

func takeBusy() busy {
	var b busy
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := bytes.Cut(data, []byte("\n"))
		f := bytes.Fields(line)
		for i, v := range f[1:] {
			n, _ := strconv.ParseUint(string(v), 10, 64)
			b.total += n
			if i == 3 || i == 4 { // idle, iowait
				b.idle += n
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return b
}

// coresBusy returns how many cores the machine kept busy between a and b
// (over wall), and how many of them this process took.
func coresBusy(a, b busy, wall time.Duration) (machine, self float64) {
	if b.total > a.total {
		frac := 1 - float64(b.idle-a.idle)/float64(b.total-a.total)
		machine = frac * float64(runtime.NumCPU())
	}
	if wall > 0 {
		self = (b.self - a.self).Seconds() / wall.Seconds()
	}
	return machine, self
}
