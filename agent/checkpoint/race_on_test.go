//go:build race

package checkpoint

// raceEnabled: the race detector slows the power-cut test about tenfold, so
// its default run is shorter (the plain `go test` run does the 2000 cuts).
const raceEnabled = true
