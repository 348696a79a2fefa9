//go:build !linux

package main

import (
	"errors"
	"os"
)

func cbreak(*os.File) (func(), error) { return nil, errors.New("not supported") }
