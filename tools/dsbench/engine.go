package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stratamq/strata/dsd/storage"
)

// Metric names dsd exports on /metrics (dsd/server/metrics.go).
const (
	metricWALFsyncs    = "strata_ds_wal_fsyncs_total"
	metricWALBytes     = "strata_ds_wal_bytes_written_total"
	metricEgressBatch  = "strata_ds_egress_batches_total"
	metricEgressMsgs   = "strata_ds_egress_messages_total"
	metricScrapeMaxLen = 64 << 20
)

// engineCounters are cumulative storage engine counters at one instant.
// batches and messages are dsd's committed write batches and messages
// (summed over shards); a raw run has none.
type engineCounters struct {
	fsyncs, walBytes, batches, messages float64
}

// Engine is what the storage engine did during a phase, from counters read
// before and after it: dsd's /metrics for a dsd run, storage.Raw's
// EngineMetrics for a raw run. dsd's counters cover everything dsd did
// meanwhile (idle ticks, other clients), not only this run.
type Engine struct {
	// WALFsyncs is the number of WAL fsyncs during the phase.
	WALFsyncs float64 `json:"wal_fsyncs"`
	// FsyncsPerMsg is WALFsyncs per message stored by the phase.
	FsyncsPerMsg float64 `json:"fsyncs_per_msg"`
	// WALBytesPerMsg is the WAL bytes written per message.
	WALBytesPerMsg float64 `json:"wal_bytes_per_msg"`
	// MsgsPerBatch is dsd's committed messages per write batch (its group
	// commit); 0 for raw, where it is --batch by construction.
	MsgsPerBatch float64 `json:"msgs_per_batch,omitempty"`
	// Error says why the counters are missing (for example, /metrics not
	// reachable); the other fields are then 0.
	Error string `json:"error,omitempty"`
}

func engineDelta(before, after engineCounters, msgs int64, err error) Engine {
	if err != nil {
		return Engine{Error: err.Error()}
	}
	e := Engine{WALFsyncs: after.fsyncs - before.fsyncs}
	if msgs > 0 {
		e.FsyncsPerMsg = e.WALFsyncs / float64(msgs)
		e.WALBytesPerMsg = (after.walBytes - before.walBytes) / float64(msgs)
	}
	if b := after.batches - before.batches; b > 0 {
		e.MsgsPerBatch = (after.messages - before.messages) / b
	}
	return e
}

// rawCounters reads a Raw's engine counters.
func rawCounters(r *storage.Raw) func() (engineCounters, error) {
	return func() (engineCounters, error) {
		m := r.EngineMetrics()
		return engineCounters{fsyncs: float64(m.WALFsyncs), walBytes: float64(m.WALBytesWritten)}, nil
	}
}

// scraper reads dsd's engine counters from its /metrics endpoint.
type scraper struct {
	url    string
	client *http.Client
}

func newScraper(httpAddr string) *scraper {
	return &scraper{url: "http://" + httpAddr + "/metrics", client: &http.Client{Timeout: 10 * time.Second}}
}

func (s *scraper) counters() (engineCounters, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.url, nil)
	if err != nil {
		return engineCounters{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return engineCounters{}, fmt.Errorf("scrape %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return engineCounters{}, fmt.Errorf("scrape %s: %s", s.url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, metricScrapeMaxLen))
	if err != nil {
		return engineCounters{}, fmt.Errorf("scrape %s: %w", s.url, err)
	}
	var c engineCounters
	for name, dst := range map[string]*float64{
		metricWALFsyncs: &c.fsyncs, metricWALBytes: &c.walBytes,
		metricEgressBatch: &c.batches, metricEgressMsgs: &c.messages,
	} {
		f, ok := fams[name]
		if !ok {
			return engineCounters{}, fmt.Errorf("scrape %s: no %s (a dsd without engine metrics?)", s.url, name)
		}
		*dst = sumCounter(f)
	}
	return c, nil
}

// sumCounter adds up the counter's samples over all label values.
func sumCounter(f *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		if c := m.GetCounter(); c != nil {
			sum += c.GetValue()
		} else if u := m.GetUntyped(); u != nil {
			sum += u.GetValue()
		}
	}
	return sum
}
