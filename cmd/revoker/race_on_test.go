//go:build race

package main

// raceEnabled: the race detector slows everything down several times, so
// timing bounds do not hold under it.
const raceEnabled = true
