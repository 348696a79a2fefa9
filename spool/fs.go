package spool

import (
	"io"
	"os"
)

// fileSystem is the seam between the spool and the operating system. The
// production implementation is osFS; tests wrap it to inject ENOSPC, EIO or a
// low free-space figure. The directory lock does not go through it.
type fileSystem interface {
	OpenFile(name string, flag int, perm os.FileMode) (file, error)
	Remove(name string) error
	Rename(oldname, newname string) error
	ReadDir(name string) ([]os.DirEntry, error)
	MkdirAll(name string, perm os.FileMode) error
	// SyncDir makes the directory's entries (creations, renames) durable.
	SyncDir(name string) error
	// DiskSpace returns the space available to this (unprivileged)
	// process on the file system holding dir, and that file system's size.
	DiskSpace(dir string) (free, total int64, err error)
}

// file is an open segment or ack file.
type file interface {
	io.ReaderAt
	io.Writer
	io.WriterAt // not on files opened with O_APPEND
	io.Closer
	// Sync flushes the file's data and size to stable storage (fdatasync).
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
}

// osFS is the real file system.
type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error         { return os.Rename(oldname, newname) }
func (osFS) ReadDir(name string) ([]os.DirEntry, error)   { return os.ReadDir(name) }
func (osFS) MkdirAll(name string, perm os.FileMode) error { return os.MkdirAll(name, perm) }
func (osFS) DiskSpace(dir string) (int64, int64, error)   { return diskSpace(dir) }

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type osFile struct{ *os.File }

func (f osFile) Sync() error { return datasync(f.File) }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
