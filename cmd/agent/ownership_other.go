//go:build !unix

package main

func foreignStateDir(string) (owner, name string, ok bool) { return "", "", false }

func permissionHint(error, string) string { return "" }
