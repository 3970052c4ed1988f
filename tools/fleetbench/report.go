package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/stratamq/strata/internal/numfmt"
)

func (r *Result) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeMarkdown prints the summary as Markdown tables.
func (r *Result) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## Fleet of %s idle durable sessions\n\n", numfmt.Thousands(int64(r.Sessions)))
	fmt.Fprintf(&b, "One QoS 1 subscription each (devices/N/cmd), MQTT 5, Clean Start 0; clients from %d loopback addresses, %d dials at a time; RLIMIT_NOFILE %d.\n\n",
		r.Sources, r.Dials, r.NoFile)
	b.WriteString("| system | connect + subscribe | process | RSS before | RSS after | per session |\n|---|---|---|---|---|---|\n")
	for _, s := range r.Systems {
		rate := fmt.Sprintf("%s/s (%.1f s)", numfmt.Thousands(int64(s.ConnectRate)), s.ConnectSeconds)
		if s.Retries > 0 {
			rate += fmt.Sprintf(", %d retries", s.Retries)
		}
		var total float64
		for i, p := range s.Procs {
			name, cell := "", ""
			if i == 0 {
				name, cell = s.Name, rate
			}
			total += p.PerSession
			fmt.Fprintf(&b, "| %s | %s | %s | %s KiB | %s KiB | %.2f KiB |\n", name, cell, p.Name, numfmt.Thousands(p.BeforeKiB), numfmt.Thousands(p.AfterKiB), p.PerSession)
		}
		if len(s.Procs) > 1 {
			fmt.Fprintf(&b, "| | | total | | | %.2f KiB |\n", total)
		}
	}
	for _, s := range r.Systems {
		if s.GatewayGoroutines != 0 || s.GatewayHeapPerSession != 0 {
			fmt.Fprintf(&b, "\nGateway once idle: %s connections held (%s closed); per session %.2f goroutines, %.2f KiB heap in use, %.2f KiB stacks.\n",
				numfmt.Thousands(int64(s.GatewayConnections)), numfmt.Thousands(int64(s.GatewayClosed)), s.GatewayGoroutines, s.GatewayHeapPerSession/1024, s.GatewayStackPerSession/1024)
		}
	}
	if rr := r.Reconnect; rr != nil {
		b.WriteString("\n### After a SIGKILL of the gateway\n\n| step | result |\n|---|---|\n")
		fmt.Fprintf(&b, "| gateway restarted (SIGKILL to ready) | %.1f s |\n", rr.RestartSeconds)
		fmt.Fprintf(&b, "| one QoS 1 message to each device's topic while away | %.1f s |\n", rr.PublishSeconds)
		fmt.Fprintf(&b, "| devices reconnected (Clean Start 0) | %s in %.1f s, %s with Session Present, %d retries |\n",
			numfmt.Thousands(rr.Connected), rr.ReconnectSeconds, numfmt.Thousands(rr.SessionPresent), rr.Retries)
		fmt.Fprintf(&b, "| per device: dial to CONNACK, CONNACK to its message | %.1f ms, %.1f ms (means) |\n", rr.MeanConnackMs, rr.MeanMessageMs)
		fmt.Fprintf(&b, "| messages received | %s in %.1f s |\n", numfmt.Thousands(rr.Received), rr.DeliverSeconds)
		fmt.Fprintf(&b, "| lost | %s |\n", numfmt.Thousands(rr.Lost))
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "\n**Error:** %s\n", r.Error)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// parsePids parses "1,2,3".
func parsePids(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--pids: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}
