// Package opshttp registers the operations endpoints that dsd and the
// gateway both serve on their HTTP listener: /healthz (the process
// answers), /readyz (it serves its purpose now) and /metrics (Prometheus
// text format). docs/operations.md describes them.
package opshttp

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Register adds to mux: GET /healthz, always 200 "ok"; GET /readyz, 200
// "ready" while ready returns nil and 503 "not ready: <error>" otherwise;
// GET /metrics, the metrics of reg.
func Register(mux *http.ServeMux, reg prometheus.Gatherer, ready func() error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}
