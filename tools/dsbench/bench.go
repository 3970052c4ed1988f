package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// maxRecv bounds one gRPC reply (a Next of --read-batch messages).
const maxRecv = 256 << 20

// run is dsbench's core: it runs the phases cfg asks for against the dsd
// at cfg.Addr and returns the report. Progress goes to progress. When ctx
// ends (Ctrl-C) the current phase stops, later phases are skipped, and the
// report so far is returned with Interrupted set. On an error the report
// so far is returned with the error.
func run(ctx context.Context, cfg Config, progress io.Writer) (*Report, error) {
	rep := &Report{Config: cfg}
	conns := make([]*client.Client, cfg.Conns)
	for i := range conns {
		c, err := client.Dial(cfg.Addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecv)))
		if err != nil {
			return rep, err
		}
		defer c.Close()
		conns[i] = c
	}
	callCtx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
	info, err := conns[0].Storage.Info(callCtx, &dsdv1.InfoRequest{})
	cancel()
	if err != nil {
		return rep, fmt.Errorf("info from dsd at %s: %w", cfg.Addr, err)
	}
	rep.NShards = int(info.GetNShards())
	defer func() { rep.Interrupted = ctx.Err() != nil }()

	w := newWorkload(&cfg)
	scr := newScraper(cfg.HTTPAddr)
	dsd := &grpcStorer{conns: conns, lastTs: make([]atomic.Int64, rep.NShards)}
	var target storer = dsd
	if cfg.API == apiIngest {
		ing, err := newIngestStorer(ctx, conns)
		if err != nil {
			return rep, err
		}
		defer ing.close()
		target = ing
	}
	before, err := watermarks(ctx, conns[0])
	if err != nil {
		return rep, err
	}

	switch cfg.Mode {
	case modeStore, modeBoth:
		ph := phase{name: "store dsd", target: "dsd", duration: cfg.Duration, messages: cfg.Messages}
		rep.Store, err = runStore(ctx, &cfg, w, target, ph, scr.counters, progress)
		if err != nil || ctx.Err() != nil {
			return rep, err
		}
	case modeRead:
		if cfg.Messages > 0 {
			ph := phase{name: "preload", target: "dsd", messages: cfg.Messages}
			rep.Preload, err = runStore(ctx, &cfg, w, dsd, ph, scr.counters, progress)
			if err != nil || ctx.Err() != nil {
				return rep, err
			}
		} else {
			before = nil // read everything under the filter
		}
	}
	if cfg.Raw {
		rep.Raw, err = runRaw(ctx, &cfg, w, info, progress)
		if err != nil || ctx.Err() != nil {
			return rep, err
		}
		rep.Ratio = ratio(rep.Store, rep.Raw)
	}

	if cfg.Mode != modeStore {
		lastTs := make([]int64, len(dsd.lastTs))
		for i := range lastTs {
			lastTs[i] = dsd.lastTs[i].Load()
		}
		waited, err := waitReadable(ctx, conns[0], lastTs)
		if err != nil {
			return rep, err
		}
		rep.Read, err = runRead(ctx, &cfg, conns, before, progress)
		if rep.Read != nil {
			rep.Read.WaitedSeconds = waited.Seconds()
			if s := firstStore(rep.Store, rep.Preload); s != nil && cfg.Filter == cfg.TopicPrefix+"/#" {
				rep.Read.Expected = s.Messages
			}
		}
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func firstStore(rs ...*StoreReport) *StoreReport {
	for _, r := range rs {
		if r != nil {
			return r
		}
	}
	return nil
}

// runRaw runs the store workload again, straight into Pebble through
// storage.Raw, with dsd's shard count and current layout, in --raw-dir or
// a temporary dir.
func runRaw(ctx context.Context, cfg *Config, w *workload, info *dsdv1.InfoResponse, progress io.Writer) (*StoreReport, error) {
	layout, err := layoutOf(info)
	if err != nil {
		return nil, err
	}
	dir := cfg.RawDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "dsbench-raw-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	raw, err := storage.OpenRaw(storage.Options{DataDir: dir, NShards: int(info.GetNShards()), Layout: layout})
	if err != nil {
		return nil, err
	}
	ph := phase{name: "store raw", target: "raw", duration: cfg.Duration, messages: cfg.Messages}
	rep, err := runStore(ctx, cfg, w, rawStorer{raw: raw}, ph, rawCounters(raw), progress)
	return rep, errors.Join(err, raw.Close())
}

// layoutOf is the layout of dsd's current generation (of shard 0).
func layoutOf(info *dsdv1.InfoResponse) (storage.LayoutConfig, error) {
	for _, sh := range info.GetShards() {
		for _, g := range sh.GetGenerations() {
			if g.GetId() != sh.GetCurrentGeneration() || g.GetLayout() == nil {
				continue
			}
			l := g.GetLayout()
			th := make([]int, len(l.GetWildcardThresholds()))
			for i, t := range l.GetWildcardThresholds() {
				th[i] = int(t)
			}
			return storage.LayoutConfig{
				Type:               l.GetType(),
				BitsPerTopicLevel:  int(l.GetBitsPerTopicLevel()),
				EpochBits:          int(l.GetEpochBits()),
				TopicIndexBytes:    int(l.GetTopicIndexBytes()),
				WildcardThresholds: th,
				MaxTrieStates:      int(l.GetMaxTrieStates()),
			}, nil
		}
	}
	return storage.LayoutConfig{}, fmt.Errorf("dsd's Info names no current generation layout")
}
