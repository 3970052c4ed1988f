// Package wait lets tests wait on a condition with a deadline instead of
// sleeping for a guessed time.
package wait

import (
	"testing"
	"time"
)

// For polls cond until it holds, and fails the test naming what it waited
// for if it does not hold within timeout. It polls every millisecond at
// first and backs off to every 10 ms, so a cond that makes a network call
// (an integration test asking a daemon) does not flood it.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}
