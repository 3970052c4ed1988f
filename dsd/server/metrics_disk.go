package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratamq/strata/dsd/storage"
)

// diskCollector exports storage.DiskStatus: the free-space watermark and
// why writes are refused (docs/operations.md, "Disk full").
type diskCollector struct {
	db *storage.DB
}

// Reasons of strata_dsd_read_only and strata_dsd_writes_refused_total.
const (
	reasonDiskWatermark = "disk_watermark"
	reasonWriteFailed   = "write_failed"
)

var (
	diskFreeDesc = prometheus.NewDesc("strata_dsd_disk_free_bytes",
		"Free bytes of the data dir's filesystem at the last reading (statfs, every disk_check_interval); absent when the filesystem has no such figure.", nil, nil)
	diskMinFreeDesc = prometheus.NewDesc("strata_dsd_disk_min_free_bytes",
		"The free-space watermark (durable_storage.messages.min_free_bytes); 0 when off.", nil, nil)
	readOnlyDesc = prometheus.NewDesc("strata_dsd_read_only",
		"1 while dsd refuses writes and serves reads only: disk_watermark (free space under min_free_bytes, or a write met ENOSPC; ends by itself when space returns) or write_failed (a commit failed; ends with a restart).", []string{"reason"}, nil)
	writesRefusedDesc = prometheus.NewDesc("strata_dsd_writes_refused_total",
		"Writes (Store, OpenSession, CommitSession) refused at admission because dsd is read-only, by reason.", []string{"reason"}, nil)
)

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- diskFreeDesc
	ch <- diskMinFreeDesc
	ch <- readOnlyDesc
	ch <- writesRefusedDesc
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.db.DiskStatus()
	if st.FreeBytes >= 0 {
		ch <- prometheus.MustNewConstMetric(diskFreeDesc, prometheus.GaugeValue, float64(st.FreeBytes))
	}
	ch <- prometheus.MustNewConstMetric(diskMinFreeDesc, prometheus.GaugeValue, float64(st.MinFreeBytes))
	ch <- prometheus.MustNewConstMetric(readOnlyDesc, prometheus.GaugeValue, boolGauge(st.Watermark), reasonDiskWatermark)
	ch <- prometheus.MustNewConstMetric(readOnlyDesc, prometheus.GaugeValue, boolGauge(st.WriteFailed), reasonWriteFailed)
	ch <- prometheus.MustNewConstMetric(writesRefusedDesc, prometheus.CounterValue, float64(st.RefusedWatermark), reasonDiskWatermark)
	ch <- prometheus.MustNewConstMetric(writesRefusedDesc, prometheus.CounterValue, float64(st.RefusedWriteFailed), reasonWriteFailed)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
