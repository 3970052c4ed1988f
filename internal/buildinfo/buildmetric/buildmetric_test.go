package buildmetric

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratamq/strata/internal/buildinfo"
)

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "strata_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, want one strata_build_info series", mfs)
	}
	m := mfs[0].GetMetric()[0]
	if v := m.GetGauge().GetValue(); v != 1 {
		t.Errorf("strata_build_info = %v, want 1", v)
	}
	i := buildinfo.Get()
	want := map[string]string{"version": i.Version, "commit": i.Commit, "goversion": i.GoVersion}
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	if len(got) != len(want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("label %s = %q, want %q", k, got[k], v)
		}
	}
}
