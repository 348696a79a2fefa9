//go:build !linux

package main

import "os"

// datasync is fsync where fdatasync is not available, as the spool's
// (spool/sys_other.go).
func datasync(f *os.File) error { return f.Sync() }
