package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report is dsbench's final report; --json prints it as is.
type Report struct {
	Config  Config `json:"config"`
	NShards int    `json:"n_shards"`
	// Store is the store phase against dsd (--mode store or both).
	Store *StoreReport `json:"store,omitempty"`
	// Preload is the store phase that fills dsd before a --mode read run.
	Preload *StoreReport `json:"preload,omitempty"`
	// Raw is the same store workload straight into Pebble (--raw).
	Raw *StoreReport `json:"raw,omitempty"`
	// Ratio compares Store with Raw.
	Ratio *Ratio `json:"dsd_vs_raw,omitempty"`
	// Read is the read phase (--mode read or both).
	Read *ReadReport `json:"read,omitempty"`
	// Interrupted is true when the run was stopped (Ctrl-C) before its end.
	Interrupted bool `json:"interrupted"`
	// Error is the error that ended the run early, if any.
	Error string `json:"error,omitempty"`
}

// Ratio is dsd's result divided by raw Pebble's for the same workload.
type Ratio struct {
	// Throughput is dsd msgs/s ÷ raw msgs/s (1 = no overhead).
	Throughput float64 `json:"throughput"`
	// LatencyP50 and LatencyP99 are dsd's Store latency ÷ raw's Write
	// latency at that quantile.
	LatencyP50 float64 `json:"latency_p50"`
	LatencyP99 float64 `json:"latency_p99"`
	// FsyncsPerMsg is dsd's fsyncs per message ÷ raw's (0 when either is
	// unknown).
	FsyncsPerMsg float64 `json:"fsyncs_per_msg"`
}

func ratio(dsd, raw *StoreReport) *Ratio {
	if dsd == nil || raw == nil {
		return nil
	}
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	return &Ratio{
		Throughput:   div(dsd.MsgsPerSec, raw.MsgsPerSec),
		LatencyP50:   div(dsd.Latency.P50, raw.Latency.P50),
		LatencyP99:   div(dsd.Latency.P99, raw.Latency.P99),
		FsyncsPerMsg: div(dsd.Engine.FsyncsPerMsg, raw.Engine.FsyncsPerMsg),
	}
}

func (r *Report) writeJSON(out io.Writer) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *Report) writeText(out io.Writer) error {
	c := r.Config
	var b strings.Builder
	fmt.Fprintf(&b, "dsbench  addr=%s mode=%s n_shards=%d concurrency=%d batch=%d payload=%dB qos=%d producer=%v conns=%d\n",
		c.Addr, c.Mode, r.NShards, c.Concurrency, c.Batch, c.Payload, c.QoS, c.Producer, c.Conns)
	fmt.Fprintf(&b, "topics   %s/dev<0..%d>%s   duration=%v messages=%d\n", c.TopicPrefix, c.Devices-1, newWorkload(&c).suffix, c.Duration, c.Messages)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tsecs\tmsgs\tmsgs/s\tStores/s\tMiB/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tfsyncs/msg\tWAL B/msg\tmsgs/batch\t")
	for _, s := range []*StoreReport{r.Preload, r.Store, r.Raw} {
		if s == nil {
			continue
		}
		name := "store " + s.Target
		if s == r.Preload {
			name = "preload"
		}
		fsyncs, walB, perBatch := "?", "?", "-"
		if s.Engine.Error == "" {
			fsyncs = fmt.Sprintf("%.4f", s.Engine.FsyncsPerMsg)
			walB = fmt.Sprintf("%.0f", s.Engine.WALBytesPerMsg)
			if s.Engine.MsgsPerBatch > 0 {
				perBatch = fmt.Sprintf("%.1f", s.Engine.MsgsPerBatch)
			}
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t\n",
			name, s.Seconds, s.Messages, s.MsgsPerSec, s.StoresPerSec, s.MiBPerSec,
			s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.Max, fsyncs, walB, perBatch)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range []*StoreReport{r.Preload, r.Store, r.Raw} {
		if s != nil && s.Engine.Error != "" {
			fmt.Fprintf(&b, "note: no engine counters for %s: %s\n", s.Target, s.Engine.Error)
		}
	}
	if x := r.Ratio; x != nil {
		fmt.Fprintf(&b, "dsd/raw  throughput %.2f   latency p50 %.2fx  p99 %.2fx   fsyncs/msg %.2fx\n",
			x.Throughput, x.LatencyP50, x.LatencyP99, x.FsyncsPerMsg)
	}
	if rd := r.Read; rd != nil {
		fmt.Fprintf(&b, "read     filter=%s streams=%d read-batch=%d waited %.2fs for readability\n", c.Filter, rd.Streams, c.ReadBatch, rd.WaitedSeconds)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "phase\tsecs\tmsgs\tmsgs/s\tNexts/s\tMiB/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tcomplete\t")
		fmt.Fprintf(tw, "read dsd\t%.1f\t%d\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%v\t\n",
			rd.Seconds, rd.Messages, rd.MsgsPerSec, float64(rd.NextCalls)/rd.Seconds, rd.MiBPerSec,
			rd.NextLatency.P50, rd.NextLatency.P90, rd.NextLatency.P99, rd.NextLatency.Max, rd.Complete)
		if err := tw.Flush(); err != nil {
			return err
		}
		if rd.Expected > 0 && rd.Complete && rd.Messages != rd.Expected {
			fmt.Fprintf(&b, "note: read %d messages, the run stored %d under the filter\n", rd.Messages, rd.Expected)
		}
	}
	if r.Interrupted {
		b.WriteString("interrupted: the report covers the run up to Ctrl-C\n")
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "error: %s\n", r.Error)
	}
	_, err := io.WriteString(out, b.String())
	return err
}
