//go:build unix

package file

import (
	"os"
	"syscall"
)

func fromFileInfo(fi os.FileInfo) fileStat {
	st := fileStat{size: fi.Size(), mtime: fi.ModTime().UnixNano(), regular: fi.Mode().IsRegular(), nlink: 1}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.key = devIno{dev: uint64(sys.Dev), ino: uint64(sys.Ino)}
		st.nlink = uint64(sys.Nlink)
	}
	return st
}
