//go:build unix

package agent

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// dirWritable reports whether this process may create files in the
// existing directory p (fi is its FileInfo), as the agent does in its state
// and spool directories, without writing anything: faccessat(2) with the
// effective IDs. otherOwner is true when the refusal is a permission one
// and p belongs to another user, whom the agent may run as.
func dirWritable(p string, fi os.FileInfo) (otherOwner bool, err error) {
	return writable(p, fi, unix.W_OK|unix.X_OK)
}

// fileWritable is dirWritable for an existing file the agent appends to
// (the dead-letter file and its lock).
func fileWritable(p string, fi os.FileInfo) (otherOwner bool, err error) {
	return writable(p, fi, unix.W_OK)
}

func writable(p string, fi os.FileInfo, mode uint32) (otherOwner bool, err error) {
	err = unix.Faccessat(unix.AT_FDCWD, p, mode, unix.AT_EACCESS)
	if err == nil {
		return false, nil
	}
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			return true, err
		}
	}
	return false, err
}
