// Package earlysignal catches the stop signals and SIGHUP of `agent run` and
// `agent tail` while the program's packages are initialised, before main
// runs: the AWS, Kafka and protobuf packages take tens of milliseconds to
// initialise, and a SIGTERM that came meanwhile (a service stopped right
// after it was started, a test harness) would kill the process with
// nothing logged.
//
// Packages are initialised in the order of their import paths, each once
// its imports are (The Go Programming Language Specification, "Package
// initialization"): this one imports only os, os/signal and syscall, so it
// is initialised right after them, a few milliseconds into the process,
// before the heavy packages. Keep it that way.
package earlysignal

import (
	"os"
	"os/signal"
	"syscall"
)

var caught chan os.Signal

func init() {
	if len(os.Args) < 2 || (os.Args[1] != "run" && os.Args[1] != "tail") {
		return // the other commands keep the default actions (Ctrl-C ends them)
	}
	caught = make(chan os.Signal, 8)
	signal.Notify(caught, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
}

// Caught returns the channel that has received SIGINT, SIGTERM and SIGHUP
// since the program started, nil when the command is not `run` or `tail`.
// Its receiver must act on what it holds (the channel keeps 8 signals;
// more are dropped).
func Caught() chan os.Signal { return caught }
