package storage

import (
	"github.com/cockroachdb/pebble/v2"
	dto "github.com/prometheus/client_model/go"
)

// EngineMetrics are counters of the Pebble instance that all shards share,
// since Open (they restart at zero when the data dir is reopened).
type EngineMetrics struct {
	// WALFsyncs is the number of fsyncs of the write-ahead log: the sample
	// count of Pebble's WAL fsync latency histogram. Concurrent synced
	// commits (of any shards) share fsyncs, so WALFsyncs divided by the
	// messages stored is the fsync cost of one message.
	WALFsyncs uint64
	// WALBytesWritten is the number of bytes of batches written to the WAL
	// (Pebble's WAL.BytesIn: the batch representations, without the WAL's
	// record framing). Pebble's WAL.BytesWritten is not used: it is derived
	// from the live WAL size and L0 table bytes and can go down after a
	// flush, so it is not a counter.
	WALBytesWritten uint64
}

// EngineMetrics reads the engine's counters. It takes Pebble's metrics
// snapshot (a few locks, no I/O), so it suits a scrape, not a hot path. It
// must not be called after Close. After Pebble met a full disk where it
// cannot go on (pebble_logger.go) its locks may be held for good, so it is
// not asked and the counters read zero.
func (db *DB) EngineMetrics() EngineMetrics {
	if db.pebbleBroken.Load() {
		return EngineMetrics{}
	}
	return engineMetrics(db.pdb)
}

// EngineMetrics is DB.EngineMetrics for a Raw.
func (r *Raw) EngineMetrics() EngineMetrics { return engineMetrics(r.db.pdb) }

func engineMetrics(pdb *pebble.DB) EngineMetrics {
	m := pdb.Metrics()
	em := EngineMetrics{WALBytesWritten: m.WAL.BytesIn}
	if h := m.LogWriter.FsyncLatency; h != nil {
		var pm dto.Metric
		if err := h.Write(&pm); err == nil {
			em.WALFsyncs = pm.GetHistogram().GetSampleCount()
		}
	}
	return em
}
