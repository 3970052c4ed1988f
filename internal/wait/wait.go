// Package wait lets tests wait on a condition with a deadline instead of
// sleeping for a guessed time.
package wait

import (
	"testing"
	"time"
)

// For polls cond every millisecond or so until it holds, and fails the test
// naming what it waited for if it does not hold within timeout.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}
