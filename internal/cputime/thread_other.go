//go:build !linux

package cputime

import "time"

// thread is not available here: Clock falls back to wall time.
func thread() (time.Duration, bool) { return 0, false }
