//go:build race

package aggregate

// raceEnabled: the race detector makes sync.Pool drop items on purpose, so
// allocation counts of pooled paths mean nothing.
const raceEnabled = true
