package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stratamq/strata/dsd/client"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	"github.com/stratamq/strata/internal/hist"
)

// ReadReport is the result of a read phase.
type ReadReport struct {
	// Streams is the number of streams GetStreams returned for the filter.
	Streams int `json:"streams"`
	// WaitedSeconds is how long the phase waited, before reading, for the
	// stored messages to become readable (with the v1 layout, the last
	// epoch of a stream with varying levels is readable only once
	// complete).
	WaitedSeconds float64 `json:"waited_for_readable_seconds"`
	Seconds       float64 `json:"seconds"`
	Messages      int64   `json:"messages"`
	NextCalls     int64   `json:"next_calls"`
	MsgsPerSec    float64 `json:"msgs_per_sec"`
	// MiBPerSec counts payload bytes only.
	MiBPerSec float64 `json:"payload_mib_per_sec"`
	// NextLatency is Next call to reply.
	NextLatency hist.Summary `json:"next_latency"`
	// Complete is true when every stream was read to its readable end
	// within --duration.
	Complete bool `json:"complete"`
	// Expected is the number of messages the run stored under the filter
	// before reading (0 when it read data it did not store).
	Expected int64 `json:"expected,omitempty"`
}

// watermarks returns each shard's watermark: a stream read from it sees
// every message stored after this call.
func watermarks(ctx context.Context, c *client.Client) (map[uint32]int64, error) {
	res, err := c.Storage.Watermarks(ctx, &dsdv1.WatermarksRequest{})
	if err != nil {
		return nil, fmt.Errorf("watermarks: %w", err)
	}
	out := make(map[uint32]int64, len(res.GetWatermarks()))
	for _, w := range res.GetWatermarks() {
		out[w.GetShard()] = w.GetStartTimeUs()
	}
	return out, nil
}

// waitReadable waits until every message of the run is readable: for each
// shard, the readable clock R has passed lastTs, the shard's largest
// timestamp of the run (0: nothing stored there), and, with a finite epoch,
// the epoch of lastTs is complete (Next on a stream with varying levels
// returns only completed epochs). It polls Info, for at most one epoch plus
// 10 s.
func waitReadable(ctx context.Context, c *client.Client, lastTs []int64) (time.Duration, error) {
	start := time.Now()
	var deadline time.Time
	for {
		info, err := c.Storage.Info(ctx, &dsdv1.InfoRequest{})
		if err != nil {
			return time.Since(start), fmt.Errorf("info: %w", err)
		}
		ready := true
		maxEpoch := time.Duration(0)
		for _, sh := range info.GetShards() {
			eb := epochBits(sh)
			if eb < 40 {
				maxEpoch = max(maxEpoch, time.Duration(1<<eb)*time.Microsecond)
			}
			var last int64
			if i := int(sh.GetShard()); i < len(lastTs) {
				last = lastTs[i]
			}
			if last == 0 {
				continue
			}
			r := sh.GetReadableClockUs()
			if r < last || (eb < 63 && r>>eb <= last>>eb) {
				ready = false
			}
		}
		if ready {
			return time.Since(start), nil
		}
		if deadline.IsZero() {
			deadline = start.Add(10*time.Second + maxEpoch)
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("stored messages not readable after %v", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// epochBits is the epoch width of the shard's current generation: 64 (one
// endless epoch, nothing held back) unless it is of the v1 layout
// (wildcard_optimized), the only one with epochs; wildcard_optimized_v2
// records 0 there.
func epochBits(sh *dsdv1.ShardInfo) int {
	for _, g := range sh.GetGenerations() {
		if g.GetId() == sh.GetCurrentGeneration() && g.GetLayout().GetType() == "wildcard_optimized" {
			return int(g.GetLayout().GetEpochBits())
		}
	}
	return 64
}

// runRead reads every stream matching cfg.Filter from the given per-shard
// start times (nil: from 0) with cfg.Concurrency readers, each taking
// streams from a shared queue and calling Next until the stream has
// nothing more to read. It is bounded by cfg.Duration and ctx.
func runRead(ctx context.Context, cfg *Config, conns []*client.Client, since map[uint32]int64, progress io.Writer) (*ReadReport, error) {
	rep := &ReadReport{}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	minSince := int64(math.MaxInt64)
	for _, s := range since {
		minSince = min(minSince, s)
	}
	if since == nil {
		minSince = 0
	}
	callCtx, callCancel := context.WithTimeout(ctx, cfg.CallTimeout)
	streams, err := conns[0].Storage.GetStreams(callCtx, &dsdv1.GetStreamsRequest{TopicFilter: cfg.Filter, StartTimeUs: minSince})
	callCancel()
	if err != nil {
		return rep, fmt.Errorf("read: get streams: %w", err)
	}
	rep.Streams = len(streams.GetStreams())
	queue := make(chan *dsdv1.Stream, rep.Streams)
	for _, st := range streams.GetStreams() {
		queue <- st
	}
	close(queue)

	var (
		lat            hist.Histogram
		msgs, calls    atomic.Int64
		payload        atomic.Int64
		drained        atomic.Int64
		workersStopped = make(chan struct{})
	)
	start := time.Now()
	var pg errgroup.Group
	if cfg.Progress > 0 {
		pg.Go(func() error {
			printProgress(progress, "read", start, cfg.Progress, workersStopped, &msgs, &lat)
			return nil
		})
	}
	g, gctx := errgroup.WithContext(runCtx)
	for i := range cfg.Concurrency {
		c := conns[i%len(conns)]
		g.Go(func() error {
			for st := range queue {
				if gctx.Err() != nil {
					return nil
				}
				done, err := readStream(gctx, cfg, c, st, since[st.GetShard()], &lat, &msgs, &calls, &payload)
				if err != nil {
					if gctx.Err() != nil {
						return nil // the phase's time is up
					}
					return fmt.Errorf("read: shard %d stream %s: %w", st.GetShard(), st.GetStructure(), err)
				}
				if done {
					drained.Add(1)
				}
			}
			return nil
		})
	}
	err = g.Wait()
	elapsed := time.Since(start)
	close(workersStopped)
	_ = pg.Wait()
	rep.Seconds = elapsed.Seconds()
	rep.Messages, rep.NextCalls = msgs.Load(), calls.Load()
	rep.MsgsPerSec = float64(rep.Messages) / rep.Seconds
	rep.MiBPerSec = float64(payload.Load()) / (1 << 20) / rep.Seconds
	rep.NextLatency = lat.Summary()
	rep.Complete = err == nil && drained.Load() == int64(rep.Streams)
	return rep, err
}

// readStream reads one stream to its readable end. done is false when ctx
// ended first.
func readStream(ctx context.Context, cfg *Config, c *client.Client, st *dsdv1.Stream, since int64, lat *hist.Histogram, msgs, calls, payload *atomic.Int64) (done bool, err error) {
	callCtx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
	it, err := c.Storage.MakeIterator(callCtx, &dsdv1.MakeIteratorRequest{Stream: st, TopicFilter: cfg.Filter, StartTimeUs: since})
	cancel()
	if err != nil {
		return false, fmt.Errorf("make iterator: %w", err)
	}
	iter := it.GetIterator()
	for ctx.Err() == nil {
		callCtx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
		t0 := time.Now()
		res, err := c.Storage.Next(callCtx, &dsdv1.NextRequest{Iterator: iter, MaxMessages: uint32(cfg.ReadBatch)})
		lat.Record(time.Since(t0))
		cancel()
		if err != nil {
			return false, fmt.Errorf("next: %w", err)
		}
		calls.Add(1)
		n := len(res.GetMessages())
		var b int64
		for _, m := range res.GetMessages() {
			b += int64(len(m.GetMessage().GetPayload()))
		}
		msgs.Add(int64(n))
		payload.Add(b)
		iter = res.GetIterator()
		if res.GetEndOfStream() || n == 0 {
			return true, nil
		}
	}
	return false, nil
}
