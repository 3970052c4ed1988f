package storage

import (
	"testing"
	"time"
)

func TestLatencyHistogramIsCumulative(t *testing.T) {
	var h latencyHistogram
	for _, d := range []time.Duration{10 * time.Microsecond, 50 * time.Microsecond, 60 * time.Microsecond, time.Millisecond, time.Hour} {
		h.observe(d)
	}
	s := h.snapshot()
	if s.Count != 5 {
		t.Fatalf("count = %d, want 5", s.Count)
	}
	// Bounds: 50µs, 100µs, 200µs, 400µs, 800µs, 1.6ms, ...
	want := map[int]uint64{0: 2, 1: 3, 4: 3, 5: 4, len(s.Bounds) - 1: 4}
	for i, n := range want {
		if s.Counts[i] != n {
			t.Errorf("bucket %d (≤ %gs) = %d, want %d", i, s.Bounds[i], s.Counts[i], n)
		}
	}
	if got := s.SumSeconds; got < 3600 || got > 3600.01 {
		t.Errorf("sum = %g s", got)
	}
}
