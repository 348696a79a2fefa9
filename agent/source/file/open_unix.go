//go:build unix

package file

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// errNotRegular is returned by openRegular for a path that is not a regular
// file (a FIFO, a device, a socket, a directory).
var errNotRegular = errors.New("not a regular file")

// openRegular opens path for reading, only if it is a regular file. Matched
// paths are opened without trusting an earlier stat: open(2) of a FIFO waits
// for a writer, which would stall the event goroutine or the loop (and so
// shutdown) for as long as none comes. O_NONBLOCK makes that open return at
// once; it is cleared before the file is used. O_NOCTTY keeps a terminal
// from becoming the agent's.
func openRegular(path string) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	for {
		err = unix.Fstat(fd, &st)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		err = errNotRegular
	}
	if err == nil {
		err = unix.SetNonblock(fd, false)
	}
	if err != nil {
		_ = unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openDir opens a directory to list it; anything else fails at once (a FIFO
// put where a directory was does not block the open).
func openDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK, 0)
}
