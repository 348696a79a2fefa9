package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync is fdatasync(2), as the spool's (spool/sys_linux.go).
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
