package hist

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the precision: each power of two is split into 2^subBits
// buckets.
const subBits = 6

// nBuckets covers every uint64 value.
const nBuckets = (64 - subBits + 1) << subBits

// Histogram is a log-linear histogram of durations. The zero value is empty
// and ready to use; it must not be copied after first use.
type Histogram struct {
	counts [nBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
}

func bucketOf(v uint64) int {
	l := bits.Len64(v)
	if l <= subBits+1 {
		return int(v)
	}
	shift := l - subBits - 1
	return (shift+1)<<subBits + int(v>>shift) - 1<<subBits
}

// bucketMid is the middle of bucket i's value range.
func bucketMid(i int) uint64 {
	if i < 2<<subBits {
		return uint64(i)
	}
	shift := i>>subBits - 1
	low := uint64(i&(1<<subBits-1)+1<<subBits) << shift
	return low + (uint64(1)<<shift)/2
}

// Record adds one duration; a negative one counts as 0.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max returns the largest recorded value, exactly (0 when empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the q-quantile (0 < q <= 1), or 0 when empty. The
// largest value is exact; the others are bucket midpoints, never above the
// largest value.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	if rank == n {
		return h.Max()
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketMid(i), h.max.Load()))
		}
	}
	return h.Max()
}

// Summary is a latency summary in milliseconds, as the tools print and
// write as JSON.
type Summary struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Millis converts d to milliseconds.
func Millis(d time.Duration) float64 { return float64(d) / 1e6 }

// Summary returns p50, p90, p99, the maximum and the mean; all zero when
// the histogram is empty.
func (h *Histogram) Summary() Summary {
	s := Summary{P50: Millis(h.Quantile(0.5)), P90: Millis(h.Quantile(0.9)), P99: Millis(h.Quantile(0.99)), Max: Millis(h.Max())}
	if n := h.n.Load(); n > 0 {
		s.Mean = Millis(time.Duration(h.sum.Load() / n))
	}
	return s
}
