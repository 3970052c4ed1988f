package storage

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCommitterPipelined measures the group committer the way the
// ingest path drives it: producers × inflight Stores of one 100-byte
// message each in flight at once (StoreAsync, no goroutine per Store),
// every one fsynced before it is answered. It reports messages/s, fsyncs
// per message and messages per commit round.
func BenchmarkCommitterPipelined(b *testing.B) {
	for _, producers := range []int{1, 10, 100} {
		for _, inflight := range []int{1, 32} {
			b.Run(fmt.Sprintf("producers=%d/inflight=%d", producers, inflight), func(b *testing.B) {
				benchPipelined(b, producers, inflight)
			})
		}
	}
}

func benchPipelined(b *testing.B, producers, inflight int) {
	db, err := Open(Options{DataDir: b.TempDir(), IdleTickInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	type producer struct {
		client string
		msg    IngestMessage
		seq    uint64
		mu     sync.Mutex
	}
	ps := make([]*producer, producers)
	for i := range ps {
		p := &producer{client: fmt.Sprintf("bench-%d", i)}
		p.msg = IngestMessageOf(msg(fmt.Sprintf("bench/%d/temp", i), string(make([]byte, 100))))
		ps[i] = p
	}
	per := max(b.N/producers, inflight)
	total := int64(per * producers)
	var answered atomic.Int64
	allDone := make(chan struct{})
	var failed sync.Once
	// next submits the producer's next Store, and again from each answer,
	// until n are done: inflight Stores of each producer stay in flight.
	var submit func(p *producer, left *int)
	submit = func(p *producer, left *int) {
		p.mu.Lock()
		if *left == 0 {
			p.mu.Unlock()
			return
		}
		*left--
		p.seq++
		seq := p.seq
		// Submitted under the producer's lock: its Stores reach the shard
		// in sequence order, as a connection's do.
		defer p.mu.Unlock()
		db.StoreAsync(p.client, []IngestMessage{p.msg}, &Producer{ClientID: p.client, Epoch: 1, FirstSeq: seq}, func(_ StoreResult, err error) {
			if err != nil {
				failed.Do(func() { b.Error(err); close(allDone) })
				return
			}
			if answered.Add(1) == total {
				close(allDone)
				return
			}
			// Not on the committer's goroutine: StoreAsync may wait for
			// the shard's writer, which may wait for the committer.
			go submit(p, left)
		})
	}
	before, rounds0 := db.EngineMetrics().WALFsyncs, db.CommitStats().Rounds
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	lefts := make([]int, producers)
	for i, p := range ps {
		lefts[i] = per
		for range inflight {
			submit(p, &lefts[i])
		}
	}
	<-allDone
	elapsed := time.Since(start)
	b.StopTimer()
	n := float64(per * producers)
	b.ReportMetric(n/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(db.EngineMetrics().WALFsyncs-before)/n, "fsyncs/msg")
	if r := db.CommitStats().Rounds - rounds0; r > 0 {
		b.ReportMetric(n/float64(r), "msgs/round")
	}
}
