package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stratamq/strata/internal/checker"
)

// runner is one run: its configuration, counters, history and clients.
type runner struct {
	cfg   Config
	stats stats
	rec   *recorder
	subs  []*subscriber
	// pubStart is when publishing began.
	pubStart time.Time

	logMu sync.Mutex
	log   io.Writer

	// ackedTopics holds the topics with an acked retained publish (--retain).
	ackedTopics sync.Map

	// testDialPub, when set, replaces dialPub (tests).
	testDialPub func(ctx context.Context, name string) (pubConn, error)
}

func (r *runner) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.log, "mqttload: "+format+"\n", args...)
}

func (r *runner) noteAcked(topic string) {
	if r.cfg.Retain {
		r.ackedTopics.Store(topic, true)
	}
}

// run runs cfg until it ends or ctx is cancelled, and reports. The report
// is filled in as far as the run got, also on error.
func run(ctx context.Context, cfg Config, stderr io.Writer) (Report, error) {
	r := &runner{cfg: cfg, log: stderr}
	rep := Report{Config: cfg, Mode: "live"}
	rec, err := newRecorder(cfg.History, cfg.Check)
	if err != nil {
		return rep, err
	}
	r.rec = rec
	var runErr error
	if cfg.Queued > 0 {
		rep.Mode = "queued"
		runErr = r.runQueued(ctx, &rep)
	} else {
		runErr = r.runLive(ctx, &rep)
	}
	r.fill(&rep)
	if err := rec.close(); err != nil && runErr == nil {
		runErr = err
	}
	if cfg.Check && runErr == nil {
		r.check(&rep)
	}
	rep.Interrupted = ctx.Err() != nil
	return rep, runErr
}

// runLive: subscribers connect and subscribe, publishers publish for the
// configured count or duration, subscribers drain, and with --retain a late
// subscriber reads the retained values.
func (r *runner) runLive(ctx context.Context, rep *Report) error {
	cfg := &r.cfg
	if err := r.connectSubs(ctx, cfg.Addr); err != nil {
		return err
	}
	subCtx, stopSubs := context.WithCancel(ctx)
	var subWG sync.WaitGroup
	defer func() {
		stopSubs()
		subWG.Wait()
	}()
	var offline chan struct{}
	if cfg.SubOfflineAt > 0 {
		offline = make(chan struct{})
	}
	for _, s := range r.subs {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			s.run(subCtx, offline)
		}()
	}
	stopProgress := r.startProgress(ctx)
	defer stopProgress()

	r.pubStart = time.Now()
	if offline != nil {
		tm := time.AfterFunc(cfg.SubOfflineAt, func() { close(offline) })
		defer tm.Stop()
	}
	issue, cancelIssue := context.WithCancel(ctx)
	if cfg.Duration > 0 {
		issue, cancelIssue = context.WithTimeout(ctx, cfg.Duration)
	}
	r.runPublishers(ctx, issue, cfg.Count)
	cancelIssue()
	rep.PublishSeconds = time.Since(r.pubStart).Seconds()

	r.drain(ctx, r.subs)
	if cfg.Retain && ctx.Err() == nil {
		r.lateRetained(ctx)
	}
	return nil
}

// connectSubs creates and connects the subscribers, a few at a time.
func (r *runner) connectSubs(ctx context.Context, addr string) error {
	r.subs = make([]*subscriber, r.cfg.Subscribers)
	for i := range r.subs {
		r.subs[i] = r.newSubscriber(r.cfg.subName(i), false)
	}
	if err := r.eachSub(ctx, func(ctx context.Context, s *subscriber) error { return s.connect(ctx, addr) }); err != nil {
		for _, s := range r.subs {
			s.drop(true, true, "start-up failed")
		}
		return err
	}
	return nil
}

// eachSub runs f for every subscriber, up to 32 at once.
func (r *runner) eachSub(ctx context.Context, f func(context.Context, *subscriber) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for _, s := range r.subs {
		g.Go(func() error { return f(gctx, s) })
	}
	return g.Wait()
}

// runPublishers runs every publisher until its count is reached or issue
// ends.
func (r *runner) runPublishers(ctx, issue context.Context, count int) {
	var wg sync.WaitGroup
	for i := range r.cfg.Publishers {
		p := &publisher{r: r, idx: i, name: r.cfg.pubName(i), topics: r.cfg.topicsOf(i)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx, issue, count)
		}()
	}
	wg.Wait()
}

// drain waits, up to --drain, until every subscriber has every acked
// message when it should (QoS ≥ 1 and a filter that covers every topic),
// or else until deliveries stop for a while with all subscribers online.
// A pause in deliveries does not end the wait when messages are still due:
// a busy server may be slow to resend, and a loss is only called at the end.
func (r *runner) drain(ctx context.Context, subs []*subscriber) {
	const quiet = 2 * time.Second
	deadline := time.Now().Add(r.cfg.Drain)
	covers := r.cfg.filterCoversAll()
	expectAll := r.cfg.effectiveQoS() >= 1 && covers
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	last, lastChange := r.stats.delivered.Load(), time.Now()
	for {
		// At QoS 0 there are no acks: a subscriber that has everything
		// published is done too.
		target := r.stats.acked.Load()
		if r.cfg.QoS == 0 {
			target = r.stats.published.Load()
		}
		online, complete := true, true
		for _, s := range subs {
			online = online && s.online.Load()
			complete = complete && s.unique.Load() >= target
		}
		now := time.Now()
		if n := r.stats.delivered.Load(); n != last {
			last, lastChange = n, now
		}
		switch {
		case online && covers && complete:
			return
		case !expectAll && online && now.Sub(lastChange) >= quiet:
			return
		case now.After(deadline):
			r.logf("drain: stopped waiting after %v", r.cfg.Drain)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lateRetained connects a fresh subscriber after publishing and waits for
// the retained value of every topic with an acked retained publish.
func (r *runner) lateRetained(ctx context.Context) {
	late := r.newSubscriber(r.cfg.ClientPrefix+"late", true)
	if err := late.connect(ctx, r.cfg.Addr); err != nil {
		r.logf("late subscriber: %v", err)
		return
	}
	defer late.drop(true, true, "end of run")
	want := int64(0)
	r.ackedTopics.Range(func(k, _ any) bool {
		if checker.Match(r.cfg.Filter, k.(string)) {
			want++
		}
		return true
	})
	deadline := time.Now().Add(r.cfg.Drain)
	for late.retained.Load() < want && time.Now().Before(deadline) {
		if !waitUntil(ctx, time.Now().Add(10*time.Millisecond)) {
			return
		}
	}
	r.stats.retainedGot.Store(late.retained.Load())
	r.stats.retainedWant.Store(want)
}

// startProgress prints a progress line every --progress until the
// returned stop is called.
func (r *runner) startProgress(ctx context.Context) (stop func()) {
	if r.cfg.Progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.cfg.Progress)
		defer t.Stop()
		start := time.Now()
		prev := progress{at: start}
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			online := 0
			for _, s := range r.subs {
				if s.online.Load() {
					online++
				}
			}
			r.logMu.Lock()
			r.stats.progressLine(r.log, start, &prev, online, len(r.subs))
			r.logMu.Unlock()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// check judges the history with internal/checker.
func (r *runner) check(rep *Report) {
	readers := make([]string, len(r.subs))
	for i, s := range r.subs {
		readers[i] = s.name
	}
	opts := checker.Options{Readers: readers}
	cr := checker.Check(r.rec.events(), opts)
	rep.Check = &CheckReport{
		OK:             cr.OK(opts),
		Lost:           len(cr.Lost),
		LostBy:         cr.LostBy,
		Unexpected:     len(cr.Unexpected),
		Redeliveries:   cr.Redeliveries,
		QoS2Duplicates: len(cr.QoS2Duplicates),
		Duplicates:     len(cr.Duplicates),
		Order:          len(cr.OrderViolations),
		Recovered:      cr.Recovered,
		RetainedBad:    len(cr.RetainedMissing) + len(cr.RetainedWrong),
		SessionsLost:   len(cr.SessionsLost),
		Violations:     len(cr.Violations),
		Summary:        cr.String(),
	}
}
