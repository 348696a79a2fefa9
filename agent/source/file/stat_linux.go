package file

import (
	"errors"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// statx gives device, inode, size, times and (where the file system keeps
// it) the birth time in one call.
const statxMask = unix.STATX_TYPE | unix.STATX_NLINK | unix.STATX_INO | unix.STATX_SIZE | unix.STATX_MTIME | unix.STATX_BTIME

var statxMissing atomic.Bool // kernel without statx (before 4.11): use stat

func fromStatx(sx *unix.Statx_t) fileStat {
	st := fileStat{
		key:     devIno{dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), ino: sx.Ino},
		size:    int64(sx.Size),
		mtime:   sx.Mtime.Sec*1e9 + int64(sx.Mtime.Nsec),
		nlink:   uint64(sx.Nlink),
		regular: sx.Mode&unix.S_IFMT == unix.S_IFREG,
	}
	if useBirthTime && sx.Mask&unix.STATX_BTIME != 0 {
		st.birth = sx.Btime.Sec*1e9 + int64(sx.Btime.Nsec)
	}
	return st
}

// statPath stats path, following symlinks.
func statPath(path string) (fileStat, error) {
	if !statxMissing.Load() {
		var sx unix.Statx_t
		err := unix.Statx(unix.AT_FDCWD, path, unix.AT_STATX_SYNC_AS_STAT, statxMask, &sx)
		if err == nil {
			return fromStatx(&sx), nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return fileStat{}, &os.PathError{Op: "statx", Path: path, Err: err}
		}
		statxMissing.Store(true)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileStat{}, err
	}
	return fromFileInfo(fi), nil
}

// statFile stats an open file.
func statFile(f *os.File) (fileStat, error) {
	if !statxMissing.Load() {
		var sx unix.Statx_t
		err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, statxMask, &sx)
		if err == nil {
			return fromStatx(&sx), nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return fileStat{}, &os.PathError{Op: "statx", Path: f.Name(), Err: err}
		}
		statxMissing.Store(true)
	}
	fi, err := f.Stat()
	if err != nil {
		return fileStat{}, err
	}
	return fromFileInfo(fi), nil
}
