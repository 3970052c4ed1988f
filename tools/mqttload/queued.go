package main

import (
	"context"
	"sync"
	"time"

	"github.com/stratamq/strata/internal/hist"
)

// ReplayReport is the offline-queue replay (--queued).
type ReplayReport struct {
	// Queued is the number of messages acked while the subscribers were
	// offline: each subscriber's queue.
	Queued int64 `json:"queued"`
	// Delivered is the number of first deliveries over all subscribers
	// after they reconnected.
	Delivered int64 `json:"delivered"`
	// FirstMs is the time from reconnecting to the first message, the
	// slowest subscriber's.
	FirstMs float64 `json:"first_ms"`
	// DrainSeconds is the time from reconnecting to the last message, the
	// slowest subscriber's.
	DrainSeconds float64 `json:"drain_s"`
	// MsgsPerSec is Delivered / DrainSeconds: the replay rate over all
	// subscribers. PerSubscriber is the mean rate of one subscriber.
	MsgsPerSec    float64 `json:"msgs_per_s"`
	PerSubscriber float64 `json:"per_subscriber_msgs_per_s"`
	// Complete is true when every subscriber got its whole queue.
	Complete bool `json:"complete"`
}

// runQueued: durable subscribers subscribe and disconnect, publishers queue
// --queued messages for them, then the subscribers reconnect and the replay
// is timed.
func (r *runner) runQueued(ctx context.Context, rep *Report) error {
	cfg := &r.cfg
	if err := r.connectSubs(ctx, cfg.Addr); err != nil {
		return err
	}
	for _, s := range r.subs {
		s.drop(true, false, "offline while the queue fills")
	}
	stopProgress := r.startProgress(ctx)
	defer stopProgress()
	r.pubStart = time.Now()
	r.runPublishers(ctx, ctx, cfg.Count)
	rep.PublishSeconds = time.Since(r.pubStart).Seconds()
	if ctx.Err() != nil {
		return nil
	}

	reconnected := time.Now()
	addr := cfg.Addr
	if cfg.SubAddr2 != "" {
		addr = cfg.SubAddr2
	}
	subCtx, stopSubs := context.WithCancel(ctx)
	var subWG sync.WaitGroup
	defer func() {
		stopSubs()
		subWG.Wait()
	}()
	if err := r.eachSub(ctx, func(ctx context.Context, s *subscriber) error { return s.connect(ctx, addr) }); err != nil {
		for _, s := range r.subs {
			s.drop(true, true, "reconnect failed")
		}
		return err
	}
	for _, s := range r.subs {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			s.run(subCtx, nil)
		}()
	}
	r.drain(ctx, r.subs)
	rep.Replay = r.replayReport(reconnected)
	return nil
}

func (r *runner) replayReport(reconnected time.Time) *ReplayReport {
	rr := &ReplayReport{Queued: r.stats.acked.Load(), Complete: true}
	var rates float64
	for _, s := range r.subs {
		u := s.unique.Load()
		rr.Delivered += u
		rr.Complete = rr.Complete && u >= rr.Queued
		if first := s.first.Load(); first != 0 {
			rr.FirstMs = max(rr.FirstMs, hist.Millis(time.Unix(0, first).Sub(reconnected)))
		}
		if last := s.last.Load(); last != 0 {
			d := time.Unix(0, last).Sub(reconnected).Seconds()
			rr.DrainSeconds = max(rr.DrainSeconds, d)
			if d > 0 {
				rates += float64(u) / d
			}
		}
	}
	if rr.DrainSeconds > 0 {
		rr.MsgsPerSec = float64(rr.Delivered) / rr.DrainSeconds
	}
	if len(r.subs) > 0 {
		rr.PerSubscriber = rates / float64(len(r.subs))
	}
	return rr
}
