//go:build race

package main

// raceEnabled builds the end-to-end tests' agent binary with the race
// detector too when the tests run with -race.
const raceEnabled = true
