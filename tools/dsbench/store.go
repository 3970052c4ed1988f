package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/hist"
)

// storer is where a store phase sends its Stores: dsd over gRPC, or
// storage.Raw. worker picks the connection; firstSeq is 0 without
// producer state.
type storer interface {
	store(ctx context.Context, worker int, clientID string, msgs []*storagev1.Message, firstSeq uint64) error
}

// grpcStorer stores through dsd's gRPC API. lastTs keeps, per shard, the
// largest timestamp dsd assigned to a message of this run, so that a read
// phase knows when everything stored is readable.
type grpcStorer struct {
	conns  []*client.Client
	lastTs []atomic.Int64
}

func (s *grpcStorer) store(ctx context.Context, worker int, clientID string, msgs []*storagev1.Message, firstSeq uint64) error {
	req := &dsdv1.StoreRequest{ClientId: clientID, Messages: msgs}
	if firstSeq > 0 {
		req.Producer = &dsdv1.Producer{ClientId: clientID, Epoch: 1, FirstSeq: firstSeq}
	}
	res, err := s.conns[worker%len(s.conns)].Storage.Store(ctx, req)
	if err != nil {
		return err
	}
	if res.GetResult() != dsdv1.StoreResult_STORE_RESULT_STORED {
		return fmt.Errorf("store answered %v, want STORED", res.GetResult())
	}
	ts := res.GetTimestampsUs()
	if sh := int(res.GetShard()); sh < len(s.lastTs) && len(ts) > 0 {
		last := &s.lastTs[sh]
		for {
			old := last.Load()
			if ts[len(ts)-1] <= old || last.CompareAndSwap(old, ts[len(ts)-1]) {
				break
			}
		}
	}
	return nil
}

// rawStorer writes the same Stores straight into Pebble.
type rawStorer struct{ raw *storage.Raw }

func (s rawStorer) store(_ context.Context, _ int, clientID string, msgs []*storagev1.Message, firstSeq uint64) error {
	var p *storage.Producer
	if firstSeq > 0 {
		p = &storage.Producer{ClientID: clientID, Epoch: 1, FirstSeq: firstSeq}
	}
	res, err := s.raw.Write(clientID, msgs, p)
	if err == nil && res.Duplicate {
		err = fmt.Errorf("raw write answered duplicate")
	}
	return err
}

// workload generates the messages of a store phase: topics
// <prefix>/dev<d>/l1/.../l<levels-1> and a fixed payload. It is the same
// for every target, so dsd and raw runs store the same keys.
type workload struct {
	cfg     *Config
	suffix  string // "/l1/l2"
	payload []byte
}

func newWorkload(cfg *Config) *workload {
	var sb strings.Builder
	for i := 1; i < cfg.Levels; i++ {
		sb.WriteString("/l")
		sb.WriteString(strconv.Itoa(i))
	}
	payload := make([]byte, cfg.Payload)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	return &workload{cfg: cfg, suffix: sb.String(), payload: payload}
}

func (w *workload) clientID(worker int) string {
	return w.cfg.ClientPrefix + "w" + strconv.Itoa(worker)
}

// messages builds n messages for worker, whose first message is its k-th.
// Workers interleave over the devices: message k of worker i goes to device
// (k*concurrency + i) mod devices.
func (w *workload) messages(worker int, k int64, n int) []*storagev1.Message {
	msgs := make([]*storagev1.Message, n)
	for j := range msgs {
		dev := ((k+int64(j))*int64(w.cfg.Concurrency) + int64(worker)) % int64(w.cfg.Devices)
		msgs[j] = &storagev1.Message{
			Topic:   w.cfg.TopicPrefix + "/dev" + strconv.FormatInt(dev, 10) + w.suffix,
			Payload: w.payload,
			Qos:     uint32(w.cfg.QoS),
		}
	}
	return msgs
}

// StoreReport is the result of one store phase.
type StoreReport struct {
	// Target is "dsd" (gRPC) or "raw" (storage.Raw into Pebble).
	Target       string  `json:"target"`
	Seconds      float64 `json:"seconds"`
	Messages     int64   `json:"messages"`
	Stores       int64   `json:"stores"`
	MsgsPerSec   float64 `json:"msgs_per_sec"`
	StoresPerSec float64 `json:"stores_per_sec"`
	// MiBPerSec counts payload bytes only.
	MiBPerSec float64 `json:"payload_mib_per_sec"`
	// Latency is Store call to reply (dsd) or Write call to return (raw).
	Latency hist.Summary `json:"latency"`
	Engine  Engine       `json:"engine"`
}

// phase bounds a store phase.
type phase struct {
	name     string
	target   string
	duration time.Duration // 0: no time bound
	messages int64         // 0: no count bound
}

// runStore runs one store phase: cfg.Concurrency workers, each storing
// batches of cfg.Batch messages as its own publisher until the phase's
// bounds or ctx stop it. Stores in flight when it stops still complete
// (each within CallTimeout) and count. The first failed Store ends the
// phase with its error.
func runStore(ctx context.Context, cfg *Config, w *workload, st storer, ph phase, engine func() (engineCounters, error), progress io.Writer) (*StoreReport, error) {
	rep := &StoreReport{Target: ph.target}
	before, beforeErr := engine()
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if ph.duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, ph.duration)
	}
	defer cancel()
	var (
		lat            hist.Histogram
		msgs, stores   atomic.Int64
		budget         atomic.Int64
		limitByCount   = ph.messages > 0
		workersStopped = make(chan struct{})
	)
	budget.Store(ph.messages)
	start := time.Now()
	var pg errgroup.Group
	if cfg.Progress > 0 {
		pg.Go(func() error {
			printProgress(progress, ph.name, start, cfg.Progress, workersStopped, &msgs, &lat)
			return nil
		})
	}
	g, gctx := errgroup.WithContext(runCtx)
	for i := range cfg.Concurrency {
		g.Go(func() error {
			clientID := w.clientID(i)
			var k int64 // messages this worker stored
			for gctx.Err() == nil {
				n := cfg.Batch
				if limitByCount {
					if left := budget.Add(-int64(n)); left < 0 {
						n += int(left)
						if n <= 0 {
							return nil
						}
					}
				}
				batch := w.messages(i, k, n)
				var firstSeq uint64
				if cfg.Producer {
					firstSeq = uint64(k) + 1
				}
				callCtx, callCancel := context.WithTimeout(context.WithoutCancel(gctx), cfg.CallTimeout)
				t0 := time.Now()
				err := st.store(callCtx, i, clientID, batch, firstSeq)
				lat.Record(time.Since(t0))
				callCancel()
				if err != nil {
					return fmt.Errorf("%s: worker %d (%s): %w", ph.name, i, clientID, err)
				}
				k += int64(n)
				msgs.Add(int64(n))
				stores.Add(1)
			}
			return nil
		})
	}
	err := g.Wait()
	elapsed := time.Since(start)
	close(workersStopped)
	_ = pg.Wait()
	after, afterErr := engine()

	rep.Seconds = elapsed.Seconds()
	rep.Messages, rep.Stores = msgs.Load(), stores.Load()
	rep.MsgsPerSec = float64(rep.Messages) / rep.Seconds
	rep.StoresPerSec = float64(rep.Stores) / rep.Seconds
	rep.MiBPerSec = float64(rep.Messages) * float64(cfg.Payload) / (1 << 20) / rep.Seconds
	rep.Latency = lat.Summary()
	rep.Engine = engineDelta(before, after, rep.Messages, firstErr(beforeErr, afterErr))
	return rep, err
}

// printProgress writes one line per interval until stop is closed.
func printProgress(out io.Writer, name string, start time.Time, every time.Duration, stop <-chan struct{}, msgs *atomic.Int64, lat *hist.Histogram) {
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := int64(0), start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			n := msgs.Load()
			rate := float64(n-last) / now.Sub(lastAt).Seconds()
			fmt.Fprintf(out, "[%s] %5.1fs  msgs %d  %.0f msgs/s now  p99 so far %.2fms\n",
				name, now.Sub(start).Seconds(), n, rate, hist.Millis(lat.Quantile(0.99)))
			last, lastAt = n, now
		}
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
