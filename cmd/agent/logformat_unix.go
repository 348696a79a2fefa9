//go:build unix

package main

import (
	"os"
	"strconv"
	"syscall"
)

// fileDevIno returns f's device and inode numbers in decimal.
func fileDevIno(f *os.File) (dev, ino string, ok bool) {
	fi, err := f.Stat()
	if err != nil {
		return "", "", false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", "", false
	}
	return strconv.FormatUint(uint64(st.Dev), 10), strconv.FormatUint(uint64(st.Ino), 10), true //nolint:unconvert // types differ by platform
}
