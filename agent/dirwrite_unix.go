//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// fileReadable is fileWritable for a file the agent reads (and replaces
// by renaming a new one over it: the checkpoint file).
func fileReadable(p string, fi os.FileInfo) (otherOwner bool, err error) {
	return writable(p, fi, unix.R_OK)
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

// stateFile is a file of the state directory the agent needs: read (the
// checkpoint file, replaced by a rename) or written (the others).
type stateFile struct {
	name string
	read bool
}

// strangerInState is, for a process run as root, a warning naming the
// files of dir (the state directory, which belongs to another user: the
// service's) that belong to someone else than dir's owner and that the
// owner may not read or write as it must (no permission for others or
// dir's group): a run as root by hand left them, and the agent run as the
// owner fails on them. "" when there are none, or when this process is not
// root (it finds out by trying: fileUsable, dirUsable).
func strangerInState(dir string, files ...stateFile) string {
	if os.Geteuid() != 0 {
		return ""
	}
	dfi, err := os.Stat(dir)
	if err != nil {
		return ""
	}
	duid, ok := owner.OfInfo(dfi)
	if !ok || duid == 0 {
		return ""
	}
	dgid := dfi.Sys().(*syscall.Stat_t).Gid
	var bad []string
	fuid := -1
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		uid, ok := owner.OfInfo(fi)
		if !ok || uid == duid {
			continue
		}
		other, group := os.FileMode(0o002), os.FileMode(0o020)
		if f.read {
			other, group = 0o004, 0o040
		}
		perm := fi.Mode().Perm()
		if perm&other != 0 || (perm&group != 0 && fi.Sys().(*syscall.Stat_t).Gid == dgid) {
			continue
		}
		bad = append(bad, p)
		fuid = uid
	}
	if len(bad) == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s to %s, but %s to %s: the agent running as %s (the service, if it runs as the owner of state_dir) cannot use %s; "+
		"if the agent was run as %s by hand, give the state back: chown -R %s: %s",
		strings.Join(bad, ", "), pick(len(bad), "belongs", "belong"), owner.Describe(fuid), dir, owner.Describe(duid),
		owner.Name(duid), pick(len(bad), "it", "them"), owner.Name(fuid), owner.Name(duid), dir)
}

func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ownParent is p's parent directory when it belongs to this user and this
// user may write in it (p is in this user's state), else "".
func ownParent(p string) string {
	parent := filepath.Dir(p)
	fi, err := os.Stat(parent)
	if parent == p || err != nil {
		return ""
	}
	if uid, ok := owner.OfInfo(fi); !ok || uid != os.Geteuid() {
		return ""
	}
	if _, err := dirWritable(parent, fi); err != nil {
		return ""
	}
	return parent
}
