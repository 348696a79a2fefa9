package file

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Descriptor policy. The file sources of a process share one budget of
// descriptors: the soft RLIMIT_NOFILE minus a reserve that they never touch,
// left for the outputs' connections, the spool's segments, checkpoint
// writes, the admin server and the runtime. Each source also holds at most
// its max_open_files, and the event goroutine's held new files count against
// both bounds. (Go raises the soft limit to the hard limit when the process
// starts, so the soft limit is the hard one unless something lowered it.)
const (
	// fdReserveMin is the smallest reserve: a few connections per output
	// and flow, a few spool segments per flow, checkpoint and dead-letter
	// writes, admin scrapes, inotify, epoll and the standard streams, with
	// room to spare.
	fdReserveMin = 128
	// fdReserveDiv: the reserve is at least a quarter of the limit, so
	// large configurations (many flows, high sender concurrency) keep
	// their share when the limit is large.
	fdReserveDiv = 4
	// fdLimitCap stands for an unlimited RLIMIT_NOFILE.
	fdLimitCap = 1 << 30
)

// fdBudgetFor returns the descriptors the file sources may hold together
// under a soft limit of soft: soft minus the reserve, but at least half the
// limit (a limit so low that the reserve would take it all is a
// misconfiguration; half of it still lets both sides work).
func fdBudgetFor(soft uint64) int64 {
	s := int64(min(soft, fdLimitCap))
	b := s - max(fdReserveMin, s/fdReserveDiv)
	return max(b, s/2, 1)
}

// rlimitNofile returns the soft RLIMIT_NOFILE.
func rlimitNofile() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return uint64(lim.Cur), nil // int64 on FreeBSD (RLIM_INFINITY is its largest value)
}

// fdBudget counts the descriptors the file sources of the process hold.
type fdBudget struct {
	held  atomic.Int64
	limit atomic.Int64
	// starved counts the sources whose last acquire failed on this budget
	// (not on their own max_open_files): sources with idle descriptors
	// yield them.
	starved atomic.Int64
}

// processFDs is the process's budget: a descriptor limit is a property of
// the process, so every source in it shares this one. Its limit is set from
// RLIMIT_NOFILE by every New (the limit may have changed since the last).
var processFDs fdBudget

// fdPool is one source's share: at most max descriptors, each also taken
// from the process budget. acquire and release may be called from any
// goroutine (the run loop and the event goroutine).
type fdPool struct {
	max  int64
	held atomic.Int64
	proc *fdBudget
}

// errNoBudget is returned by acquire when the process budget (not the
// source's own bound) is exhausted.
var errNoBudget = errors.New("descriptor budget of the file sources exhausted")

// acquire reserves one descriptor. It fails with errNoBudget when the
// process budget is spent, and with errPoolFull when the source holds its
// max.
func (p *fdPool) acquire() error {
	for {
		n := p.held.Load()
		if n >= p.max {
			return errPoolFull
		}
		if p.held.CompareAndSwap(n, n+1) {
			break
		}
	}
	for {
		n := p.proc.held.Load()
		if n >= p.proc.limit.Load() {
			p.held.Add(-1)
			return errNoBudget
		}
		if p.proc.held.CompareAndSwap(n, n+1) {
			return nil
		}
	}
}

var errPoolFull = errors.New("max_open_files reached")

// release returns one descriptor reserved by acquire.
func (p *fdPool) release() {
	p.held.Add(-1)
	p.proc.held.Add(-1)
}

// isNoDescriptor reports an open that failed for lack of descriptors, in
// the process (EMFILE) or the system (ENFILE): the file is fine, it waits.
func isNoDescriptor(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}
