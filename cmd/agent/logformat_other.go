//go:build !unix

package main

import "os"

func fileDevIno(*os.File) (dev, ino string, ok bool) { return "", "", false }
