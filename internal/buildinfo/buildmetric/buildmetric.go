// Package buildmetric exports the running build as the strata_build_info
// Prometheus gauge. It is apart from buildinfo so that the programs without
// metrics do not link the Prometheus client.
package buildmetric

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratamq/strata/internal/buildinfo"
)

// Collector returns the strata_build_info gauge: always 1, with the build
// as its labels (version, commit, goversion), so that dashboards can join it
// with other series and see which build every instance runs. Each call
// returns a new collector, for one registry each.
func Collector() prometheus.Collector {
	i := buildinfo.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "strata_build_info",
		Help:        "Always 1; the labels name the running build (version, commit, Go version).",
		ConstLabels: prometheus.Labels{"version": i.Version, "commit": i.Commit, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
