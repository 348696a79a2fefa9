package spool

import (
	"log/slog"
	"sync"
	"time"
)

// A directory made read-only (chmod, a read-only remount, an SELinux or
// AppArmor change) refuses the spool's writes with EACCES, EPERM or EROFS
// while the files already open stay writable. The operator can undo that
// while the agent runs, so such a refusal is treated like a full disk:
// appends wait (when_full: block) and try again with backoff, acks are
// rewritten and finished segments deleted at the next maintenance round,
// and each kind of failure is logged once per errLogEvery and counted
// (Stats.WriteErrors). Nothing already accepted is touched: a frame that
// failed is cut off again or left behind in a segment that is then rolled.
const (
	// refusedMinBackoff is the first retry delay after a refused write; it
	// doubles per failed attempt up to refusedMaxBackoff. A retry costs one
	// failed open(2); 2 s bounds how long appends stay paused once the
	// directory is writable again.
	refusedMinBackoff = 100 * time.Millisecond
	refusedMaxBackoff = 2 * time.Second
	// errLogEvery paces the ERROR lines of a failure that goes on: one per
	// interval, carrying the number of failures since the last one.
	errLogEvery = 30 * time.Second
)

// refusedLocked records a write the file system refused: no new attempt
// before the backoff has passed. wmu is held.
func (s *Spool) refusedLocked(err error) {
	s.st.writeErrors.Add(1)
	if s.refErr == nil {
		s.refBackoff = refusedMinBackoff
	} else {
		s.refBackoff = min(2*s.refBackoff, refusedMaxBackoff)
	}
	s.refErr = err
	s.refUntil = time.Now().Add(s.refBackoff)
	s.appendErrLog.failed(err, "dir", s.dir, "retry_in", s.refBackoff)
}

// refusingLocked reports whether a refused write is still in its backoff.
// wmu is held.
func (s *Spool) refusingLocked() bool {
	return s.refErr != nil && time.Now().Before(s.refUntil)
}

// writesWorkLocked ends a refusal episode after a successful write. wmu is
// held.
func (s *Spool) writesWorkLocked() {
	if s.refErr != nil {
		s.refErr, s.refBackoff = nil, 0
		s.appendErrLog.ok("spool: the directory accepts writes again; appends resume", "dir", s.dir)
	}
}

// errLog logs a failure that repeats at most once per interval (ERROR,
// with the count since the last line) and its end once (INFO).
type errLog struct {
	mu      sync.Mutex
	log     *slog.Logger
	msg     string
	every   time.Duration
	last    time.Time
	n       uint64 // failures since the last line
	failing bool
}

func (l *errLog) failed(err error, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	l.failing = true
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		return
	}
	l.log.Error(l.msg, append(args, "error", err, "failures", l.n)...)
	l.last, l.n = now, 0
}

func (l *errLog) ok(msg string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing {
		l.failing, l.n = false, 0
		l.log.Info(msg, args...)
	}
}
