package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stratamq/strata/internal/numfmt"
)

// counters are Prometheus samples: by metric name, summed over label sets,
// and by full series ("name{labels}").
type counters map[string]float64

// parseMetrics reads the Prometheus text format.
func parseMetrics(r io.Reader, into counters) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		name, _, _ := strings.Cut(series, "{")
		into[name] += v
		if series != name {
			into[series] += v
		}
	}
	return sc.Err()
}

// scrape fetches and sums the counters of every endpoint.
func scrape(ctx context.Context, urls []string) (counters, error) {
	c := counters{}
	cl := &http.Client{Timeout: 5 * time.Second}
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := cl.Do(req)
		if err != nil {
			return nil, err
		}
		err = parseMetrics(resp.Body, c)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u, err)
		}
	}
	return c, nil
}

// internals are Strata's own counters over a scenario's runs, which say
// where its time goes.
type internals struct {
	received, stored, stores, commits, sent, fsyncs, dsdMsgs, dsdBatches float64
}

// The counters read (docs/operations.md lists them all).
const (
	mReceived   = "strata_gateway_messages_received_total"
	mStored     = "strata_gateway_messages_stored_total"
	mStores     = `strata_gateway_dsd_call_seconds_count{call="store"}`
	mCommits    = `strata_gateway_dsd_call_seconds_count{call="commit"}`
	mSent       = "strata_gateway_messages_sent_total"
	mFsyncs     = "strata_ds_wal_fsyncs_total"
	mDSDMsgs    = "strata_ds_egress_messages_total"
	mDSDBatches = "strata_ds_egress_batches_total"
)

// add adds the change from before to after.
func (in *internals) add(before, after counters) {
	d := func(k string) float64 { return after[k] - before[k] }
	in.received += d(mReceived)
	in.stored += d(mStored)
	in.stores += d(mStores)
	in.commits += d(mCommits)
	in.sent += d(mSent)
	in.fsyncs += d(mFsyncs)
	in.dsdMsgs += d(mDSDMsgs)
	in.dsdBatches += d(mDSDBatches)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// cells are the internals' table cells: received, stored, messages per
// Store call, WAL fsyncs per stored message, messages per dsd write batch,
// sent to subscribers, session commits per sent message.
func (in *internals) cells() []string {
	return []string{
		numfmt.Thousands(int64(in.received)), numfmt.Thousands(int64(in.stored)), ratio(in.stored, in.stores),
		ratio(in.fsyncs, in.stored), ratio(in.dsdMsgs, in.dsdBatches), numfmt.Thousands(int64(in.sent)), ratio(in.commits, in.sent),
	}
}

var internalsHeader = []string{"received", "stored", "msgs per Store", "WAL fsyncs per stored msg", "msgs per dsd batch", "sent to subscribers", "session commits per sent msg"}
