package checkpoint

import (
	"io"
	"os"
)

// fileSystem is the seam between the store and the operating system. The
// production implementation is osFS; tests inject faults (a read-only
// directory) and power cuts (internal/crashfs) through it. The lock file
// does not go through it.
type fileSystem interface {
	MkdirAll(name string, perm os.FileMode) error
	ReadFile(name string) ([]byte, error)
	OpenFile(name string, flag int, perm os.FileMode) (file, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	ReadDir(name string) ([]os.DirEntry, error)
	// SyncDir makes the directory's entries (creations, renames) durable.
	SyncDir(name string) error
}

// file is a temporary state file being written.
type file interface {
	io.Writer
	Sync() error
	Close() error
}

// osFS is the real file system.
type osFS struct{}

// readFile reads the state file; tests make it fail as a disk would.
var readFile = os.ReadFile

func (osFS) MkdirAll(name string, perm os.FileMode) error { return os.MkdirAll(name, perm) }
func (osFS) ReadFile(name string) ([]byte, error)         { return readFile(name) }
func (osFS) Rename(oldname, newname string) error         { return os.Rename(oldname, newname) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) ReadDir(name string) ([]os.DirEntry, error)   { return os.ReadDir(name) }

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	return os.OpenFile(name, flag, perm)
}

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
