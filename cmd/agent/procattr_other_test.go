//go:build !linux

package main

import "syscall"

// childAttr: only Linux has a parent-death signal; elsewhere an agent left
// by an abnormal end of the tests is stopped by the tests' cleanups alone.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
