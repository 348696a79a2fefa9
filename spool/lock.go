package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockName is the lock file in the spool directory. It holds the PID of the
// process that has the spool open, so the error a second process gets can
// name it. The lock itself is flock(2): the kernel drops it when the holder
// dies, so a crash never leaves a stale lock.
const lockName = "LOCK"

var errWouldBlock = errors.New("lock held")

// lockDir takes the spool directory's lock or returns an error wrapping
// ErrLocked that names the holder.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: open lock: %w", err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w: %s is in use by %s", ErrLocked, dir, lockHolder(path))
		}
		return nil, fmt.Errorf("spool: lock %s: %w", path, err)
	}
	// Informational only: the flock is the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// lockHolder describes the process named in the lock file.
func lockHolder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "another process"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return "another process"
	}
	desc := "process " + strconv.Itoa(pid)
	if comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err == nil {
		desc += " (" + strings.TrimSpace(string(comm)) + ")"
	}
	return desc
}
