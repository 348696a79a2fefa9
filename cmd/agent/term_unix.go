//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// cbreak makes the terminal f hand over each key press without echo (Ctrl-C
// still signals); the returned function restores it. It fails when f is
// not a terminal.
func cbreak(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &raw); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, ioctlSetTermios, old) }, nil
}

// inForeground reports whether this process's group is the foreground
// process group of the terminal f. A background job (`agent tail ... &`)
// that writes to its terminal stops on SIGTTOU under `stty tostop`, and
// otherwise draws over the shell's prompt and what the user types: its
// status line is not drawn. Not a terminal, or no answer: true (the caller
// decided to draw already).
func inForeground(f *os.File) bool {
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	if err != nil {
		return true
	}
	return pgrp == unix.Getpgrp()
}
