package storage

import (
	"sync/atomic"
	"time"
)

// FlushBucketsSeconds are the upper bounds of the flush-time histogram:
// 50 µs doubling to about 3.3 s.
var FlushBucketsSeconds = func() []float64 {
	b := make([]float64, 17)
	for i := range b {
		b[i] = 50e-6 * float64(uint64(1)<<i)
	}
	return b
}()

// latencyHistogram is a fixed-bucket histogram updated with one atomic add
// per observation, so the commit path needs no lock and no Prometheus.
type latencyHistogram struct {
	counts [18]atomic.Uint64 // one per bucket, the last for +Inf
	sumUs  atomic.Int64
}

func (h *latencyHistogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(FlushBucketsSeconds) && s > FlushBucketsSeconds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumUs.Add(d.Microseconds())
}

// Histogram is a snapshot: Counts[i] is the number of observations at or
// below Bounds[i] (cumulative), Count the total, SumSeconds their sum.
type Histogram struct {
	Bounds     []float64
	Counts     []uint64
	Count      uint64
	SumSeconds float64
}

func (h *latencyHistogram) snapshot() Histogram {
	out := Histogram{Bounds: FlushBucketsSeconds, Counts: make([]uint64, len(FlushBucketsSeconds))}
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if i < len(out.Counts) {
			out.Counts[i] = cum
		}
	}
	out.Count = cum
	out.SumSeconds = float64(h.sumUs.Load()) / 1e6
	return out
}
