//go:build unix

package agent

import (
	"errors"
	"os"
	"syscall"
)

// flock takes an exclusive lock on f, waiting for it; the kernel releases it
// if the process dies.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func funlock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
