//go:build race

package store

// raceEnabled: the race detector slows TestOpenDamaged down tenfold.
const raceEnabled = true
