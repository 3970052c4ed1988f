package hist

import (
	"math/rand/v2"
	"sort"
	"sync"
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
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Summary() != (Summary{}) || h.Count() != 0 {
		t.Fatal("empty histogram not zero")
	}
	rng := rand.New(rand.NewPCG(7, 11))
	vals := make([]time.Duration, 10000)
	for i := range vals {
		vals[i] = time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
		h.Record(vals[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		if d := float64(got-want) / float64(want); d > 0.05 || d < -0.05 {
			t.Errorf("q%.2f = %v, want about %v", q, got, want)
		}
	}
	if h.Quantile(1) != vals[len(vals)-1] || h.Max() != vals[len(vals)-1] || h.Count() != uint64(len(vals)) {
		t.Errorf("max = %v / %v, count %d; want %v, %d", h.Quantile(1), h.Max(), h.Count(), vals[len(vals)-1], len(vals))
	}
	s := h.Summary()
	if s.Max != Millis(vals[len(vals)-1]) || !(s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max) || s.Mean <= 0 {
		t.Errorf("summary %+v", s)
	}
}

func TestNegativeCountsAsZero(t *testing.T) {
	var h Histogram
	h.Record(-time.Second)
	if h.Count() != 1 || h.Max() != 0 || h.Quantile(0.5) != 0 {
		t.Errorf("after a negative duration: count %d, max %v", h.Count(), h.Max())
	}
}

func TestQuantilesOfSmallSets(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{1, 2, 3, 4, 100} {
		h.Record(d * time.Millisecond)
	}
	if got := h.Quantile(0.5); got < 2900*time.Microsecond || got > 3100*time.Microsecond {
		t.Errorf("p50 of 1,2,3,4,100 ms = %v", got)
	}
	if got := h.Quantile(0.99); got != 100*time.Millisecond {
		t.Errorf("p99 of five values = %v, want the largest", got)
	}
}

// Concurrent writers lose no value (run it with -race too).
func TestConcurrentRecord(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	const writers, each = 8, 1000
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				h.Record(time.Duration(w*each+i) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	if h.Count() != writers*each || h.Max() != (writers*each-1)*time.Microsecond {
		t.Errorf("count %d, max %v", h.Count(), h.Max())
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	b.RunParallel(func(pb *testing.PB) {
		d := time.Millisecond
		for pb.Next() {
			h.Record(d)
			d += 17
		}
	})
}
