//go:build !linux

package checkpoint

func onTmpfs(string) bool { return false }
