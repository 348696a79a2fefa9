//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/kplagent/agent/internal/owner"
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
		if uid, ok := owner.OfInfo(fi); ok && uid != os.Geteuid() {
			return true, err
		}
	}
	return false, err
}

// givenBackHint says whose fi (a file of dir) is and how to give it back to
// this user: another user's file in a directory this process writes is
// most often left by a run as root by hand. "" when fi is this user's.
func givenBackHint(fi os.FileInfo, dir string) string {
	uid, ok := owner.OfInfo(fi)
	if !ok || uid == os.Geteuid() {
		return ""
	}
	name, me := owner.Name(uid), owner.Name(os.Geteuid())
	return fmt.Sprintf("it belongs to %s (uid %d), not to %s (uid %d), the user the agent runs as; if the agent (or agent dead-letter replay) was run as %s by hand, give the state back: chown -R %s: %s",
		name, uid, me, os.Geteuid(), name, me, dir)
}
