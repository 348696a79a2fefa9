//go:build unix

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kplagent/agent/internal/owner"
)

// An agent run by hand as root in the state directory of the packaged
// service (/var/lib/agent, owned by the user agent) leaves files that are
// root's (checkpoints, spool segments, their locks); the service, running
// as agent, then fails on them at every start. foreignStateDir warns about
// that before it happens, and permissionHint explains it when it has.

// foreignStateDir returns the owner of dir ("agent (uid 998)") and its
// name when this process runs as root and dir exists and belongs to
// another user; ok is false otherwise.
func foreignStateDir(dir string) (who, name string, ok bool) {
	if os.Geteuid() != 0 || dir == "" {
		return "", "", false
	}
	uid, found := owner.Of(dir)
	if !found || uid == 0 {
		return "", "", false
	}
	return owner.Describe(uid), owner.Name(uid), true
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
	uid, ok := owner.Of(p)
	if !ok {
		p = filepath.Dir(p) // it could not be created
		if uid, ok = owner.Of(p); !ok {
			return ""
		}
	}
	me := os.Geteuid()
	if uid == me {
		return ""
	}
	fix := ""
	if stateDir != "" {
		fix = fmt.Sprintf("; if the agent was run as %s by hand, give the state back: chown -R %s: %s", owner.Name(uid), owner.Name(me), stateDir)
	}
	return fmt.Sprintf("%s belongs to %s, and the agent runs as %s%s", p, owner.Describe(uid), owner.Describe(me), fix)
}
