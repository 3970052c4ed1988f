//go:build race

package release

// raceOn: these tests build and run release binaries, which the race
// detector does not instrument; the run without -race covers them.
const raceOn = true
