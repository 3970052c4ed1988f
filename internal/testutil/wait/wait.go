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
	if !Until(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Until polls cond as For does and reports whether it held within
// timeout, for callers that print their own diagnostics on a timeout.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
	return true
}

// Every polls cond every pause and reports whether it held within
// timeout: for a cond costly enough (a check of a whole history) that the
// millisecond polls of Until would slow what it waits for.
func Every(timeout, pause time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
	return true
}
