//go:build !unix

package sdnotify

func monotonicUsec() int64 { return 0 }
