package main

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestBucketsAreMonotonicAndPrecise(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 63, 64, 127, 128, 129, 1000, 1 << 20, 123456789, 1<<63 + 5, ^uint64(0)} {
		b := bucketOf(v)
		if b < prev || b >= nBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d (of %d)", v, b, prev, nBuckets)
		}
		prev = b
		mid := bucketMid(b)
		if diff := float64(mid) - float64(v); diff > float64(v)/32+1 || -diff > float64(v)/32+1 {
			t.Errorf("bucketMid(bucketOf(%d)) = %d", v, mid)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var h hist
	if h.quantile(0.5) != 0 || h.summary() != (Latency{}) {
		t.Fatal("empty histogram not zero")
	}
	rng := rand.New(rand.NewPCG(7, 11))
	vals := make([]time.Duration, 10000)
	for i := range vals {
		vals[i] = time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
		h.record(vals[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := vals[int(q*float64(len(vals)))-1]
		got := h.quantile(q)
		if d := float64(got-want) / float64(want); d > 0.05 || d < -0.05 {
			t.Errorf("q%.2f = %v, want about %v", q, got, want)
		}
	}
	s := h.summary()
	if s.Max != ms(vals[len(vals)-1]) || !(s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max) || s.Mean <= 0 {
		t.Errorf("summary %+v", s)
	}
	// A negative duration (clock step) counts as 0.
	h.record(-time.Second)
}

func TestPercentilesSmallSets(t *testing.T) {
	var h hist
	for _, d := range []time.Duration{1, 2, 3, 4, 100} {
		h.record(d * time.Millisecond)
	}
	if got := h.quantile(0.5); got < 2900*time.Microsecond || got > 3100*time.Microsecond {
		t.Errorf("p50 of 1,2,3,4,100 ms = %v", got)
	}
	if got := h.quantile(0.99); got != 100*time.Millisecond {
		t.Errorf("p99 of five values = %v, want the largest", got)
	}
}
