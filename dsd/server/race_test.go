//go:build race

package server

// raceEnabled is true under -race (heavy tests shrink).
const raceEnabled = true
