package main

import (
	"fmt"
	"io"
)

// runKPL implements `agent kpl ...` (stub: replaced by the aggregate work).
func runKPL(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "agent kpl: not implemented yet")
	return 2
}
