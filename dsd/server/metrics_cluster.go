package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratamq/strata/dsd/cluster"
)

// clusterCollector exports the metadata group's raft status and the sites
// it records, read at scrape time.
type clusterCollector struct{ c *cluster.Cluster }

var (
	metaTermDesc        = prometheus.NewDesc("strata_ds_meta_term", "Raft term of the metadata group, as this site knows it.", nil, nil)
	metaLeaderDesc      = prometheus.NewDesc("strata_ds_meta_leader", "1 when this site leads the metadata group, else 0.", nil, nil)
	metaHasLeaderDesc   = prometheus.NewDesc("strata_ds_meta_has_leader", "1 when this site knows a leader of the metadata group, else 0.", nil, nil)
	metaCommitDesc      = prometheus.NewDesc("strata_ds_meta_commit_index", "Raft commit index of the metadata group on this site.", nil, nil)
	metaAppliedDesc     = prometheus.NewDesc("strata_ds_meta_applied_index", "Index of the last metadata entry this site applied.", nil, nil)
	metaSnapshotDesc    = prometheus.NewDesc("strata_ds_meta_snapshot_index", "Index of this site's latest metadata snapshot (the log is compacted up to it, less a margin).", nil, nil)
	metaMembersDesc     = prometheus.NewDesc("strata_ds_meta_voters", "Voters of the metadata group in this site's applied configuration.", nil, nil)
	sitesDesc           = prometheus.NewDesc("strata_ds_sites", "Sites recorded by the metadata group, by liveness as its leader last saw it.", []string{"state"}, nil)
	pendingTransitsDesc = prometheus.NewDesc("strata_ds_replica_transitions", "Replica transitions pending in the metadata group, over all shards.", nil, nil)
	inFlightDesc        = prometheus.NewDesc("strata_ds_replica_transitions_in_flight", "Replica transitions claimed and not completed yet (at most one per shard), over all shards.", nil, nil)

	shardTermDesc     = prometheus.NewDesc("strata_ds_shard_raft_term", "Raft term of a replicated shard's group, as this site knows it.", []string{"shard"}, nil)
	shardLeaderDesc   = prometheus.NewDesc("strata_ds_shard_raft_is_leader", "1 when this site leads the shard's raft group (it takes the shard's writes and reads), else 0.", []string{"shard"}, nil)
	shardHasLeadDesc  = prometheus.NewDesc("strata_ds_shard_raft_has_leader", "1 when this site knows a leader of the shard's raft group, else 0.", []string{"shard"}, nil)
	shardCommitDesc   = prometheus.NewDesc("strata_ds_shard_raft_commit_index", "Raft commit index of the shard's group on this site.", []string{"shard"}, nil)
	shardAppliedDesc  = prometheus.NewDesc("strata_ds_shard_raft_applied_index", "Index of the last entry of the shard's group this site handed to its storage to apply.", []string{"shard"}, nil)
	shardFirstDesc    = prometheus.NewDesc("strata_ds_shard_raft_first_index", "First entry the shard group's log still holds on this site (truncated every 1,000 entries to 100 before the lowest entry every replica in touch with the leader has).", []string{"shard"}, nil)
	shardRunningDesc  = prometheus.NewDesc("strata_ds_shard_raft_running", "1 while the shard's group runs on this site; 0 after it stopped on a storage error.", []string{"shard"}, nil)
	shardSnapSentDesc = prometheus.NewDesc("strata_ds_shard_raft_snapshots_sent_total", "Shard snapshots this site streamed to another replica since it started.", []string{"shard"}, nil)
	shardSnapInstDesc = prometheus.NewDesc("strata_ds_shard_raft_snapshots_installed_total", "Shard snapshots this site installed (fetched from another replica) since it started.", []string{"shard"}, nil)
)

func registerClusterMetrics(r *prometheus.Registry, c *cluster.Cluster) {
	r.MustRegister(&clusterCollector{c: c})
}

func (cc *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{metaTermDesc, metaLeaderDesc, metaHasLeaderDesc, metaCommitDesc, metaAppliedDesc, metaSnapshotDesc, metaMembersDesc, sitesDesc, pendingTransitsDesc, inFlightDesc,
		shardTermDesc, shardLeaderDesc, shardHasLeadDesc, shardCommitDesc, shardAppliedDesc, shardFirstDesc, shardRunningDesc, shardSnapSentDesc, shardSnapInstDesc} {
		ch <- d
	}
}

func (cc *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st := cc.c.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(metaTermDesc, float64(st.Term))
	gauge(metaLeaderDesc, boolFloat(st.IsLeader))
	gauge(metaHasLeaderDesc, boolFloat(st.Leader != ""))
	gauge(metaCommitDesc, float64(st.Commit))
	gauge(metaAppliedDesc, float64(st.Applied))
	gauge(metaSnapshotDesc, float64(st.SnapshotIndex))
	gauge(metaMembersDesc, float64(st.Members))
	state := cc.c.State()
	var up, down, pending float64
	for _, s := range state.GetSites() {
		if s.GetUp() {
			up++
		} else {
			down++
		}
	}
	for _, sp := range state.GetMessages().GetShards() {
		pending += float64(len(sp.GetTransitions()))
	}
	gauge(sitesDesc, up, "up")
	gauge(sitesDesc, down, "down")
	gauge(pendingTransitsDesc, pending)
	gauge(inFlightDesc, float64(cc.c.TransitionsInFlight()))
	for _, s := range cc.c.ShardStatuses() {
		shard := strconv.Itoa(s.Shard)
		gauge(shardTermDesc, float64(s.Term), shard)
		gauge(shardLeaderDesc, boolFloat(s.IsLeader), shard)
		gauge(shardHasLeadDesc, boolFloat(s.Leader != ""), shard)
		gauge(shardCommitDesc, float64(s.Commit), shard)
		gauge(shardAppliedDesc, float64(s.Applied), shard)
		gauge(shardFirstDesc, float64(s.FirstIndex), shard)
		gauge(shardRunningDesc, boolFloat(s.Running), shard)
		ch <- prometheus.MustNewConstMetric(shardSnapSentDesc, prometheus.CounterValue, float64(s.SnapshotsSent), shard)
		ch <- prometheus.MustNewConstMetric(shardSnapInstDesc, prometheus.CounterValue, float64(s.SnapshotsInstalled), shard)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
