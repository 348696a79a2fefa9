package main

import "syscall"

// childAttr is the SysProcAttr of an agent a test starts: on Linux it dies
// with the test binary (see agentCmd).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
