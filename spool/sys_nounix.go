//go:build !unix

package spool

import (
	"errors"
	"os"
)

var errUnsupported = errors.New("spool: unsupported platform")

func diskSpace(string) (int64, int64, error) { return 0, 0, errUnsupported }
func flock(*os.File) error                   { return errUnsupported }
func isNoSpace(error) bool                   { return false }
func isRefused(err error) bool               { return errors.Is(err, os.ErrPermission) }
