package main

import (
	"fmt"
	"net"
	"os"
)

// unixWriteEnv makes the test binary a client that writes one line to the
// unix socket it names, then exits (see TestMain).
const unixWriteEnv = "AGENT_TEST_UNIX_WRITE"

func unixWrite(path string) int {
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	if _, err := c.Write([]byte("a line from another user\n")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
