//go:build race

package auth

// raceEnabled: the race detector makes bcrypt about 10 times slower, so the
// mass-reconnect test checks its counts with cheap hashes under -race.
const raceEnabled = true
