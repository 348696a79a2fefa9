//go:build !unix

package spool

import (
	"errors"
	"os"
)

var errUnsupported = errors.New("spool: unsupported platform")

func freeBytes(string) (int64, error) { return 0, errUnsupported }
func flock(*os.File) error            { return errUnsupported }
func isNoSpace(error) bool            { return false }
