package journald

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// stderrLog logs what journalctl writes to its standard error, line by
// line, at most stderrBurst lines per stderrWindow (the rest counted and
// reported with the next line logged), and keeps the last lines for the
// error of a journalctl that fails at start.
type stderrLog struct {
	log *slog.Logger

	mu         sync.Mutex
	partial    []byte
	last       []string
	window     time.Time
	inWindow   int
	suppressed int
}

const (
	stderrBurst    = 5
	stderrWindow   = 10 * time.Second
	stderrKeep     = 8
	stderrLineMax  = 1024
	stderrTailJoin = " | "
)

func newStderrLog(log *slog.Logger) *stderrLog { return &stderrLog{log: log} }

func (l *stderrLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if room := stderrLineMax - len(l.partial); room > 0 {
				l.partial = append(l.partial, p[:min(len(p), room)]...)
			}
			break
		}
		if room := stderrLineMax - len(l.partial); room > 0 {
			l.partial = append(l.partial, p[:min(i, room)]...)
		}
		l.line(string(l.partial))
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (l *stderrLog) line(s string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return
	}
	if len(l.last) == stderrKeep {
		l.last = append(l.last[:0], l.last[1:]...)
	}
	l.last = append(l.last, s)
	now := time.Now()
	if now.Sub(l.window) >= stderrWindow {
		l.window, l.inWindow = now, 0
	}
	if l.inWindow >= stderrBurst {
		l.suppressed++
		return
	}
	l.inWindow++
	if l.suppressed > 0 {
		l.log.Warn("journalctl", "stderr", s, "suppressed_lines", l.suppressed)
		l.suppressed = 0
		return
	}
	l.log.Warn("journalctl", "stderr", s)
}

// tail returns the last lines written (and a last one without its newline).
func (l *stderrLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.last
	if len(l.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], strings.TrimSpace(string(l.partial)))
	}
	if len(lines) == 0 {
		return "(nothing on stderr)"
	}
	return strings.Join(lines, stderrTailJoin)
}
