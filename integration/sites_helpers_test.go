package integration

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil/wait"
)

// shardLeaders are the shard leaders (site indexes; -1: none) as the
// sites' metrics say, from one scrape per site; the first site that says
// it leads a shard counts, as shardLeader does.
func shardLeaders(sites []*DSD, nShards int) []int {
	out := make([]int, nShards)
	for sh := range out {
		out[sh] = -1
	}
	for i, d := range sites {
		for sh, s := range shardStates(d.HTTPAddr) {
			if sh >= 0 && sh < nShards && s.leader && out[sh] == -1 {
				out[sh] = i
			}
		}
	}
	return out
}

// waitLed waits until every shard has a leader other than site skip (-1:
// any) and returns the leaders.
func waitLed(t *testing.T, sites []*DSD, nShards, skip int, within time.Duration) []int {
	t.Helper()
	var lead []int
	if !wait.Until(within, func() bool {
		lead = shardLeaders(sites, nShards)
		return !slices.Contains(lead, -1) && (skip < 0 || !slices.Contains(lead, skip))
	}) {
		t.Fatalf("not every shard has a leader (other than site %d) within %v: %v", skip, within, lead)
	}
	return lead
}

// mostLeading is the site that leads the most shards.
func mostLeading(lead []int, nSites int) (site, count int) {
	counts := make([]int, nSites)
	for _, l := range lead {
		if l >= 0 {
			counts[l]++
		}
	}
	for i := range counts {
		if counts[i] > counts[site] {
			site = i
		}
	}
	return site, counts[site]
}

// startSpreadSites starts three replicated sites (startReplicatedSites)
// and waits until every shard has a leader and more than one site leads
// (each shard's preferred leader campaigns first: dsd/cluster leaders.go).
// It returns the sites and the leaders.
func startSpreadSites(t *testing.T, ctx context.Context, nShards int) ([]*DSD, []int) {
	t.Helper()
	sites := startReplicatedSites(t, ctx, nShards)
	var lead []int
	if !wait.Until(30*time.Second, func() bool {
		lead = shardLeaders(sites, nShards)
		distinct := map[int]bool{}
		for _, l := range lead {
			distinct[l] = true
		}
		return !slices.Contains(lead, -1) && len(distinct) > 1
	}) {
		t.Fatalf("the shards' leadership is not spread over the sites: %v", lead)
	}
	return sites, lead
}

// grpcAddrList is the sites' gRPC addresses, comma-separated (a gateway's
// --dsd).
func grpcAddrList(sites []*DSD) string {
	addrs := make([]string, len(sites))
	for i, d := range sites {
		addrs[i] = d.GRPCAddr
	}
	return strings.Join(addrs, ",")
}
