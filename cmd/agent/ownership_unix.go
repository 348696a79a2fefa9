//go:build unix

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// An agent run by hand as root in the state directory of the packaged
// service (/var/lib/agent, owned by the user agent) leaves files that are
// root's (checkpoints, spool segments, their locks); the service, running
// as agent, then fails on them at every start. foreignStateDir warns about
// that before it happens, and permissionHint explains it when it has.

// foreignStateDir returns the owner of dir ("agent (uid 998)") and its
// name when this process runs as root and dir exists and belongs to
// another user; ok is false otherwise.
func foreignStateDir(dir string) (owner, name string, ok bool) {
	if os.Geteuid() != 0 || dir == "" {
		return "", "", false
	}
	uid, found := ownerOf(dir)
	if !found || uid == 0 {
		return "", "", false
	}
	return describeUser(uid), userName(uid), true
}

// permissionHint explains a permission error on a file or directory that
// belongs to another user than this process's, as left by a run as root:
// "" when err is not one.
func permissionHint(err error, stateDir string) string {
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrPermission) || !errors.As(err, &pe) {
		return ""
	}
	p := pe.Path
	uid, ok := ownerOf(p)
	if !ok {
		p = filepath.Dir(p) // it could not be created
		if uid, ok = ownerOf(p); !ok {
			return ""
		}
	}
	me := os.Geteuid()
	if uid == me {
		return ""
	}
	fix := ""
	if stateDir != "" {
		fix = fmt.Sprintf("; if the agent was run as %s by hand, give the state back: chown -R %s: %s", userName(uid), userName(me), stateDir)
	}
	return fmt.Sprintf("%s belongs to %s, and the agent runs as %s%s", p, describeUser(uid), describeUser(me), fix)
}

func ownerOf(p string) (int, bool) {
	fi, err := os.Lstat(p)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// userName is the name of uid, or the number when it has none.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// describeUser is "agent (uid 998)", or "uid 998" without a name.
func describeUser(uid int) string {
	if n := userName(uid); n != strconv.Itoa(uid) {
		return fmt.Sprintf("%s (uid %d)", n, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}
