// Package hist is a log-linear latency histogram, safe for concurrent use
// without locks: an HdrHistogram in miniature, shared by the load tools
// (tools/dsbench, tools/mqttload).
//
// # Buckets
//
// Values are nanoseconds (a time.Duration; negative durations, from a clock
// step, count as 0). Values below 2^(subBits+1) = 128 ns have a bucket each;
// above that every power of two [2^k, 2^(k+1)) is split into 2^subBits = 64
// equal buckets, so a bucket's midpoint is within 1/128 (0.8 %) of every
// value in the bucket and a reported quantile is off by less than 1.6 %, the
// bound the tools' documentation quotes. 3,776 buckets cover every uint64,
// about 30 KiB per Histogram.
//
// # Concurrency
//
// Record adds to atomic counters: any number of goroutines may record while
// another takes quantiles. A reader sees each counter at some point during
// its walk, so a quantile taken while values are still arriving is
// approximate in rank (never out of range). The largest value is kept exactly
// and is what Quantile(1) and Summary.Max report.
package hist
