package file

import "strings"

func splitPath(p string) []string { return strings.Split(p, "/") }
