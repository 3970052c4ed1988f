package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stratamq/strata/dsd/storage"
	"github.com/stratamq/strata/internal/buildinfo/buildmetric"
)

// metrics are dsd's Prometheus metrics. Counters and gauges that storage
// already keeps are read at scrape time (storageCollector), so the write and
// read paths pay nothing for them; latency histograms are observed here.
type metrics struct {
	registry   *prometheus.Registry
	storeBatch *prometheus.HistogramVec
	// storeByShard are storeBatch's children, one per shard, looked up once
	// (a label lookup per Store showed in profiles).
	storeByShard []prometheus.Observer
	next         prometheus.Histogram
	// ingestFrame counts the Stores of each ingest request.
	ingestFrame prometheus.Histogram
	// ingestPending counts the Stores of every ingest stream submitted to
	// the engine and not yet answered.
	ingestPending prometheus.Gauge
	// panics counts handler panics the recovery interceptor (or a link
	// entry's worker) turned into INTERNAL, by method.
	panics *prometheus.CounterVec
	// internalErrors counts errors answered with the generic INTERNAL
	// status, by method.
	internalErrors *prometheus.CounterVec
	// linkEntriesRefused counts Watch and Read entries refused because
	// their link held max_link_entries.
	linkEntriesRefused prometheus.Counter
	// linkReads counts the Next calls of Read entries by result
	// (linkReadData, ...); linkListings the listings of Watch entries;
	// linkRunnable the entries queued for a link's workers.
	linkReads    [3]prometheus.Counter
	linkListings prometheus.Counter
	linkRunnable prometheus.Gauge
	// linkSharedReads counts batches given by shareRead.
	linkSharedReads prometheus.Counter
	// sharedGrants counts shared group grants by kind (new, redelivery).
	sharedGrants *prometheus.CounterVec
}

// Results of a Read entry's Next (strata_ds_link_reads_total's result).
const (
	linkReadData  = iota // messages or the end of the stream: a batch pushed
	linkReadEmpty        // nothing readable yet
	linkReadError        // the entry ended with an error
)

// latencyBuckets span 50 µs to ~3 s.
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 17)

func newMetrics(db *storage.DB) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		storeBatch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "strata_ds_store_batch_seconds",
			Help:    "Time from receiving a Store until its messages are committed and fsynced.",
			Buckets: latencyBuckets,
		}, []string{"shard"}),
		next: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strata_ds_next_seconds",
			Help:    "Time to serve one Next call.",
			Buckets: latencyBuckets,
		}),
		ingestPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_ds_ingest_pending_stores",
			Help: "Stores received on the gateways' ingest streams and not yet answered (queued for or in a commit round).",
		}),
		ingestFrame: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strata_ds_ingest_stores_per_request",
			Help:    "Stores carried by one request of a gateway's ingest stream.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_ds_grpc_panics_total",
			Help: "Panics of gRPC handlers (and gateway link entries) recovered and answered INTERNAL.",
		}, []string{"method"}),
		internalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_ds_grpc_internal_errors_total",
			Help: "Calls answered INTERNAL with a generic message (the error is in dsd's log with its incident id).",
		}, []string{"method"}),
		linkEntriesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_ds_link_entries_refused_total",
			Help: "Watch and Read entries refused (RESOURCE_EXHAUSTED) because their gateway link held durable_sessions.max_link_entries.",
		}),
	}
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_ds_link_reads_total",
		Help: "Next calls of gateway link Read entries, by result: data (a batch pushed), empty (nothing readable yet: a wasted wake-up), error (the entry ended).",
	}, []string{"result"})
	for i, r := range []string{"data", "empty", "error"} {
		m.linkReads[i] = reads.WithLabelValues(r)
	}
	m.linkListings = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_ds_link_watch_listings_total",
		Help: "Stream listings of gateway link Watch entries (one per woken entry).",
	})
	m.linkRunnable = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "strata_ds_link_runnable_entries",
		Help: "Gateway link entries queued for their link's workers (all links).",
	})
	m.linkSharedReads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_ds_link_shared_reads_total",
		Help: "Batches given to a gateway link Read entry from another entry's read of the same stream and position (one scan and one send per gateway).",
	})
	m.sharedGrants = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_ds_shared_grants_total",
		Help: "Batches of shared subscription groups handed to a member: new (read after the group's cursor) or redelivery (a departed member's).",
	}, []string{"kind"})
	m.registry.MustRegister(reads, m.linkListings, m.linkRunnable, m.linkSharedReads, m.sharedGrants)
	for shard := range db.NShards() {
		m.storeByShard = append(m.storeByShard, m.storeBatch.WithLabelValues(strconv.Itoa(shard)))
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.storeBatch, m.next, m.ingestFrame, m.ingestPending, m.panics, m.internalErrors, m.linkEntriesRefused,
		&storageCollector{db: db},
		&engineCollector{db: db},
		&diskCollector{db: db},
	)
	m.registry.MustRegister(buildmetric.Collector())
	return m
}

func (m *metrics) observeStore(shard int, d time.Duration) {
	m.storeByShard[shard].Observe(d.Seconds())
}

// storageCollector exports storage.Stats of every shard.
type storageCollector struct {
	db *storage.DB
}

type shardMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(storage.Stats) float64
}

func newShardMetric(name, help string, kind prometheus.ValueType, value func(storage.Stats) float64) shardMetric {
	return shardMetric{prometheus.NewDesc(name, help, []string{"shard"}, nil), kind, value}
}

var shardMetrics = []shardMetric{
	newShardMetric("strata_ds_egress_batches_total", "Write batches committed.", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.Batches) }),
	newShardMetric("strata_ds_egress_messages_total", "Messages committed.", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.Messages) }),
	newShardMetric("strata_ds_egress_bytes_total", "Bytes of stored message values committed.", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.Bytes) }),
	newShardMetric("strata_ds_egress_batches_failed_total", "Write batches whose commit failed.", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.FailedBatches) }),
	newShardMetric("strata_ds_lts_seek_total", "Pebble seeks on the message read path (both layouts).", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.Seeks) }),
	newShardMetric("strata_ds_lts_next_total", "Pebble nexts on the message read path (both layouts).", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.Nexts) }),
	newShardMetric("strata_ds_lts_collision_total", "Keys whose real topic did not match the filter (varying-level hash collisions).", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.Collisions) }),
	newShardMetric("strata_ds_store_duplicates_total", "Stores answered duplicate by the producer check.", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.Duplicates) }),
	newShardMetric("strata_ds_store_refused_total", "Stores refused by the producer check (gap or stale epoch).", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.Refused) }),
	newShardMetric("strata_ds_idle_ticks_total", "Idle ticks committed to advance the readable clock.", prometheus.CounterValue, func(s storage.Stats) float64 { return float64(s.Ticks) }),
	newShardMetric("strata_ds_readable_clock_seconds", "The shard's readable clock: every message at or below it is committed.", prometheus.GaugeValue, func(s storage.Stats) float64 { return float64(s.ReadableClockUs) / 1e6 }),
	newShardMetric("strata_ds_generations", "Live generations.", prometheus.GaugeValue, func(s storage.Stats) float64 { return float64(s.Generations) }),
	newShardMetric("strata_ds_lts_trie_states", "States of the current generation's learned topic trie.", prometheus.GaugeValue, func(s storage.Stats) float64 { return float64(s.TrieStates) }),
	newShardMetric("strata_ds_streams", "Streams of the current generation.", prometheus.GaugeValue, func(s storage.Stats) float64 { return float64(s.Streams) }),
	newShardMetric("strata_ds_lts_trie_at_capacity", "1 when the trie reached max_trie_states and learns new values as varying.", prometheus.GaugeValue, func(s storage.Stats) float64 {
		if s.TrieAtCapacity {
			return 1
		}
		return 0
	}),
}

var flushDesc = prometheus.NewDesc("strata_ds_egress_flush_seconds",
	"Time from applying a write batch to its fsync returning.", []string{"shard"}, nil)

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range shardMetrics {
		ch <- m.desc
	}
	ch <- flushDesc
}

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	for shard := range c.db.NShards() {
		st := c.db.Stats(shard)
		label := strconv.Itoa(shard)
		for _, m := range shardMetrics {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st), label)
		}
		ch <- constHistogram(flushDesc, st.FlushTime, label)
	}
}

// constHistogram exports a storage histogram snapshot.
func constHistogram(desc *prometheus.Desc, h storage.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b] = h.Counts[i]
	}
	return prometheus.MustNewConstHistogram(desc, h.Count, h.SumSeconds, buckets, labels...)
}

// engineCollector exports storage.EngineMetrics: counters of the one Pebble
// instance that every shard shares, so they carry no shard label.
type engineCollector struct {
	db *storage.DB
}

var (
	walFsyncsDesc = prometheus.NewDesc("strata_ds_wal_fsyncs_total",
		"Fsyncs of the storage engine's write-ahead log (shared by all shards; concurrent commits share fsyncs).", nil, nil)
	walBytesDesc = prometheus.NewDesc("strata_ds_wal_bytes_written_total",
		"Bytes of write batches written to the storage engine's write-ahead log, without its record framing.", nil, nil)
)

// The group committer's counters: one round is one Pebble batch and one
// fsync shared by every shard's commands of the round.
var (
	commitRoundsDesc = prometheus.NewDesc("strata_ds_commit_rounds_total",
		"Commit rounds of the group committer (one Pebble batch and one fsync each).", nil, nil)
	commitCommandsDesc = prometheus.NewDesc("strata_ds_commit_commands_total",
		"Applied commands (Store batches, session commands, ticks, will firings) committed in rounds.", nil, nil)
	commitMessagesDesc = prometheus.NewDesc("strata_ds_commit_messages_total",
		"Messages committed in rounds.", nil, nil)
	commitBytesDesc = prometheus.NewDesc("strata_ds_commit_bytes_total",
		"Bytes of stored message values committed in rounds.", nil, nil)
	commitRoundDesc = prometheus.NewDesc("strata_ds_commit_round_seconds",
		"Time from a round's Pebble batch being applied to its fsync returning.", nil, nil)
)

// The tail cache's figures (dsd/storage/tailcache.go).
var (
	tailBytesDesc = prometheus.NewDesc("strata_ds_tail_cache_bytes",
		"Bytes held by the tail cache of recently written messages (durable_storage.messages.tail_cache_bytes bounds it).", nil, nil)
	tailReadsDesc = prometheus.NewDesc("strata_ds_tail_cache_reads_total",
		"Reads of v2 streams' live end: served from the tail cache (hit) or sent to Pebble because the cache does not cover the reader's position (miss).", []string{"result"}, nil)
	tailEvictedDesc = prometheus.NewDesc("strata_ds_tail_cache_evicted_total",
		"Messages evicted from the tail cache to stay within its budget.", nil, nil)
	sharedReturnedDesc = prometheus.NewDesc("strata_ds_shared_returned_total",
		"Shared group grants handed back by a member whose connection or membership ended, for another member.", nil, nil)
	sharedDroppedDesc = prometheus.NewDesc("strata_ds_shared_dropped_messages_total",
		"Messages of QoS 2 grants dropped because their member's session ended before it finished them (MQTT 5 section 4.8.2: never to another member).", nil, nil)
	sharedMissedDesc = prometheus.NewDesc("strata_ds_shared_missed_messages_total",
		"Messages of shared group grants that waited for a member when their generation was dropped (retention): nobody will get them.", nil, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tailBytesDesc
	ch <- tailReadsDesc
	ch <- tailEvictedDesc
	ch <- sharedReturnedDesc
	ch <- sharedDroppedDesc
	ch <- sharedMissedDesc
	ch <- walFsyncsDesc
	ch <- walBytesDesc
	ch <- commitRoundsDesc
	ch <- commitCommandsDesc
	ch <- commitMessagesDesc
	ch <- commitBytesDesc
	ch <- commitRoundDesc
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	em := c.db.EngineMetrics()
	ch <- prometheus.MustNewConstMetric(walFsyncsDesc, prometheus.CounterValue, float64(em.WALFsyncs))
	ch <- prometheus.MustNewConstMetric(walBytesDesc, prometheus.CounterValue, float64(em.WALBytesWritten))
	cs := c.db.CommitStats()
	ch <- prometheus.MustNewConstMetric(commitRoundsDesc, prometheus.CounterValue, float64(cs.Rounds))
	ch <- prometheus.MustNewConstMetric(commitCommandsDesc, prometheus.CounterValue, float64(cs.Commands))
	ch <- prometheus.MustNewConstMetric(commitMessagesDesc, prometheus.CounterValue, float64(cs.Messages))
	ch <- prometheus.MustNewConstMetric(commitBytesDesc, prometheus.CounterValue, float64(cs.Bytes))
	ch <- constHistogram(commitRoundDesc, cs.RoundTime)
	ts := c.db.TailCacheStats()
	ch <- prometheus.MustNewConstMetric(tailBytesDesc, prometheus.GaugeValue, float64(ts.Bytes))
	ch <- prometheus.MustNewConstMetric(tailReadsDesc, prometheus.CounterValue, float64(ts.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(tailReadsDesc, prometheus.CounterValue, float64(ts.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(tailEvictedDesc, prometheus.CounterValue, float64(ts.Evicted))
	ss := c.db.SharedStats()
	ch <- prometheus.MustNewConstMetric(sharedReturnedDesc, prometheus.CounterValue, float64(ss.Returned))
	ch <- prometheus.MustNewConstMetric(sharedDroppedDesc, prometheus.CounterValue, float64(ss.Dropped))
	ch <- prometheus.MustNewConstMetric(sharedMissedDesc, prometheus.CounterValue, float64(ss.Missed))
}
