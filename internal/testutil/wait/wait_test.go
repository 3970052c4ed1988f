package wait

import (
	"testing"
	"time"
)

func TestUntilAndEvery(t *testing.T) {
	n := 0
	if !Until(time.Second, func() bool { n++; return n == 3 }) || n != 3 {
		t.Fatalf("Until: held after %d polls, want 3", n)
	}
	if Until(5*time.Millisecond, func() bool { return false }) {
		t.Fatal("Until: a cond that never holds held")
	}
	n = 0
	if !Every(time.Second, time.Millisecond, func() bool { n++; return n == 2 }) || n != 2 {
		t.Fatalf("Every: held after %d polls, want 2", n)
	}
	if Every(5*time.Millisecond, time.Millisecond, func() bool { return false }) {
		t.Fatal("Every: a cond that never holds held")
	}
}
