//go:build unix

// Package owner names the users that own files, for the messages that
// explain a state directory left to another user (most often by a run as
// root by hand).
package owner

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// Of returns the uid that owns p (not following a last symlink); ok is
// false when p cannot be looked at.
func Of(p string) (uid int, ok bool) {
	fi, err := os.Lstat(p)
	if err != nil {
		return 0, false
	}
	return OfInfo(fi)
}

// OfInfo returns the uid that owns the file fi describes.
func OfInfo(fi os.FileInfo) (uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// Name is the name of uid, or the number when it has none.
func Name(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// Describe is "agent (uid 998)", or "uid 998" without a name.
func Describe(uid int) string {
	if n := Name(uid); n != strconv.Itoa(uid) {
		return fmt.Sprintf("%s (uid %d)", n, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}
