//go:build !unix

package agent

import "os"

// flock is a no-op where flock is not available: replay must not run
// beside a running agent there.
func flock(*os.File) error { return nil }

func funlock(*os.File) {}

// tryFlock is a no-op where flock is not available: two replays must not
// run at once there.
func tryFlock(*os.File) (held bool, err error) { return false, nil }
