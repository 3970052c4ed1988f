package main

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/internal/hist"
)

// stats are the run's counters, updated by publishers and subscribers and
// read by the progress line and the summary.
type stats struct {
	published atomic.Int64 // PUBLISH sent (invoked)
	acked     atomic.Int64 // PUBACK or PUBCOMP with success
	failed    atomic.Int64 // refused by the server
	unknown   atomic.Int64 // no answer: connection lost or timeout
	// delivered counts deliveries to the application (duplicates too);
	// unique counts first deliveries per subscriber.
	delivered    atomic.Int64
	unique       atomic.Int64
	redelivers   atomic.Int64 // deliveries of a message the subscriber had
	suppressed   atomic.Int64 // QoS 2 resends suppressed by mqttrec
	foreign      atomic.Int64 // messages of other runs (retained, old queues)
	violations   atomic.Int64
	reconnects   atomic.Int64
	sessionsLost atomic.Int64
	// heldAtEnd counts inbound QoS 2 packet identifiers still awaiting
	// PUBREL when subscribers stopped: exchanges the server left open.
	heldAtEnd atomic.Int64
	// retainedGot and retainedWant are the late subscriber's retained
	// messages and the topics it should have one for (--retain).
	retainedGot, retainedWant atomic.Int64
	// lastDeliver is the Unix ns of the latest first delivery.
	lastDeliver atomic.Int64

	ackLat hist.Histogram // publish → PUBACK / PUBCOMP
	e2eLat hist.Histogram // publish → first delivery, per subscriber
}

// noteDeliver records the time of a first delivery.
func (s *stats) noteDeliver(t time.Time) {
	ns := t.UnixNano()
	for {
		old := s.lastDeliver.Load()
		if ns <= old || s.lastDeliver.CompareAndSwap(old, ns) {
			return
		}
	}
}

// progress prints one line; prev holds the counts of the previous line.
type progress struct {
	at                    time.Time
	pub, acked, delivered int64
}

func (s *stats) progressLine(w io.Writer, start time.Time, prev *progress, online, subs int) {
	now := time.Now()
	cur := progress{at: now, pub: s.published.Load(), acked: s.acked.Load(), delivered: s.delivered.Load()}
	dt := now.Sub(prev.at).Seconds()
	rate := func(a, b int64) float64 {
		if dt <= 0 {
			return 0
		}
		return float64(a-b) / dt
	}
	fmt.Fprintf(w, "%6.1fs published=%d (%.0f/s) acked=%d (%.0f/s) delivered=%d (%.0f/s) unknown=%d failed=%d subs-online=%d/%d\n",
		now.Sub(start).Seconds(), cur.pub, rate(cur.pub, prev.pub), cur.acked, rate(cur.acked, prev.acked),
		cur.delivered, rate(cur.delivered, prev.delivered), s.unknown.Load(), s.failed.Load(), online, subs)
	*prev = cur
}
