package file

import (
	"log/slog"
	"time"
)

// errLogEvery is how often a recurring kind of failure is logged: the first
// at once, then one summary line per interval while failures go on. 10,000
// unreadable files make one line a minute, not one per file per scan.
const errLogEvery = time.Minute

// errLog reports one kind of failure (open, read, list) rate-limited. It
// belongs to the run goroutine.
type errLog struct {
	msg  string // what failed, and what the source does about it
	last time.Time
	n    int // failures since the last line
	path string
	err  error
}

// add notes a failure and logs, unless a line was written less than
// errLogEvery ago.
func (e *errLog) add(log *slog.Logger, now time.Time, path string, err error) {
	e.n++
	e.path, e.err = path, err
	e.flush(log, now)
}

// flush logs the failures noted since the last line, if it is time.
func (e *errLog) flush(log *slog.Logger, now time.Time) {
	if e.n == 0 || (!e.last.IsZero() && now.Sub(e.last) < errLogEvery) {
		return
	}
	log.Warn(e.msg, "failures", e.n, "last_path", e.path, "error", e.err)
	e.n, e.last = 0, now
}
