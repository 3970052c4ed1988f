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

func TestQuantilesMatchSorted(t *testing.T) {
	var h hist
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
	if h.quantile(1) != vals[len(vals)-1] {
		t.Errorf("max = %v, want %v", h.quantile(1), vals[len(vals)-1])
	}
}
