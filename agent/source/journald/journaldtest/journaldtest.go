// Package journaldtest helps tests run the journald source against a fake
// journalctl (see internal/fakejournalctl) and a journal file they write.
package journaldtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Build builds the fake journalctl into dir and returns its path.
func Build(dir string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("journaldtest: no caller")
	}
	pkg := filepath.Join(filepath.Dir(file), "..", "internal", "fakejournalctl")
	out := filepath.Join(dir, "journalctl")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = pkg
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the fake journalctl: %v\n%s", err, b)
	}
	return out, nil
}

// BuildFake builds the fake journalctl into dir and returns its path.
func BuildFake(t testing.TB, dir string) string {
	t.Helper()
	p, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Journal is a file of export-format entries the fake serves.
type Journal struct {
	Path string
	mu   sync.Mutex
	n    int
}

// NewJournal creates an empty journal file in dir.
func NewJournal(t testing.TB, dir string) *Journal {
	t.Helper()
	p := filepath.Join(dir, "journal.export")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return &Journal{Path: p}
}

// Cursor is the cursor of entry i.
func Cursor(i int) string { return fmt.Sprintf("s=fake;i=%x;x=%d", i, i) }

// Message is the MESSAGE of entry i.
func Message(i int) string { return fmt.Sprintf("message %06d", i) }

// Append appends n entries, numbered on from the last, and returns the
// number of the first. Each entry has __CURSOR, __REALTIME_TIMESTAMP (now),
// MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and _SYSTEMD_UNIT.
func (j *Journal) Append(t testing.TB, n int) int {
	t.Helper()
	return j.AppendAt(t, n, time.Now())
}

// AppendAt is Append with __REALTIME_TIMESTAMP at.
func (j *Journal) AppendAt(t testing.TB, n int, at time.Time) int {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	first := j.n
	var b strings.Builder
	now := at.UnixMicro()
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, "__CURSOR=%s\n__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\nPRIORITY=6\nSYSLOG_IDENTIFIER=app\n_SYSTEMD_UNIT=app.service\n_PID=42\nMESSAGE=%s\n\n",
			Cursor(i), now, i, Message(i))
	}
	f, err := os.OpenFile(j.Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	j.n += n
	return first
}

// Len is the number of entries appended.
func (j *Journal) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.n
}

// Env returns the fake's environment for this journal, logging its starts
// to logPath, as KEY=VALUE pairs.
func (j *Journal) Env(logPath string) []string {
	return []string{"FAKE_JOURNAL=" + j.Path, "FAKE_JOURNAL_LOG=" + logPath}
}
