//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package main

import "golang.org/x/sys/unix"

// The BSDs (macOS among them) name the termios ioctls TIOCGETA/TIOCSETA;
// Linux's TCGETS/TCSETS do not exist there.
const (
	ioctlGetTermios = unix.TIOCGETA
	ioctlSetTermios = unix.TIOCSETA
)
