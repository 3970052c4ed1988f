//go:build race

package server

// raceEnabled: the race detector multiplies the memory of every goroutine,
// so the idle-connection memory test does not run under -race.
const raceEnabled = true
