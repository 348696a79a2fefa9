// Command agent is the producer daemon and its ad hoc CLI.
package main

import (
	"fmt"
	"os"
)

var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: agent run|tail|validate|version|kpl ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "kpl":
		os.Exit(runKPL(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case "version":
		fmt.Println("agent", version)
	default:
		fmt.Fprintf(os.Stderr, "agent: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}
