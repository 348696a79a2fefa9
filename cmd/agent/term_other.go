//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package main

import (
	"errors"
	"os"
)

// cbreak is not available here: agent top's q then needs Enter.
func cbreak(*os.File) (func(), error) { return nil, errors.New("cbreak: not supported on this system") }

// inForeground cannot tell here: the status line is drawn.
func inForeground(*os.File) bool { return true }
