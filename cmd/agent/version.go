package main

// Build information, stamped by the Makefile with -ldflags
// '-X main.commit=... -X main.date=...' (next to main.version). Empty in a
// plain `go build`: `agent version` then leaves the lines out.
var (
	commit string // the git commit the binary was built from
	date   string // when it was built, RFC 3339 UTC
)
