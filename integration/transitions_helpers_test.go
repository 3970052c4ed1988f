package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil/wait"
)

// keepStoring runs one publisher per client id, each storing its next
// sequence number into p's shard as soon as the last is acked, until the
// returned stop (which waits for them; calling it again does nothing).
func keepStoring(ctx context.Context, p *shardPublishers, clients []string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, cid := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; ; seq++ {
				select {
				case <-done:
					return
				default:
				}
				p.store(ctx, cid, seq)
			}
		}()
	}
	return sync.OnceFunc(func() { close(done); wg.Wait() })
}

// startSitesAlone starts n dsd processes with n_sites = 1 and replication
// factor 3: the first allocates every shard to itself alone, then the
// others join (holding no replica until set-replicas moves some). They
// are stopped at the end of the test; ids are their site ids, by index.
func startSitesAlone(t *testing.T, ctx context.Context, n, nShards int) (sites []*DSD, ids []string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "strata.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("durable_storage.messages.n_shards = %d\ndurable_storage.messages.n_sites = 1\ndurable_storage.messages.replication_factor = 3\n", nShards)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range sites {
			_ = d.Stop(10 * time.Second)
		}
	})
	ids = make([]string, n)
	for i := range n {
		cfg := DSDConfig{DataDir: filepath.Join(dir, fmt.Sprintf("site%d", i)), ConfigFile: conf}
		if i > 0 {
			cfg.Join = sites[0].GRPCAddr
		}
		d, err := StartDSD(ctx, bins, cfg)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, d)
		wait.For(t, 20*time.Second, "the site is a member, every shard on the first site", func() bool {
			v, ok := clusterView(t, d)
			ids[i] = v.Site
			if !ok || len(v.Sites) != i+1 || len(v.Shards) != nShards {
				return false
			}
			for _, s := range v.Shards {
				if len(s.Replicas) != 1 {
					return false
				}
			}
			return true
		})
	}
	return sites, ids
}

// allShardsLoad keeps Stores going on every shard (keepStoring) and counts
// what was acked.
type allShardsLoad struct {
	pubs  []*shardPublishers
	stops []func()
}

func storeOnAllShards(t *testing.T, ctx context.Context, sites []*DSD, nShards, perShard int) *allShardsLoad {
	l := &allShardsLoad{pubs: make([]*shardPublishers, nShards), stops: make([]func(), nShards)}
	for shard := range nShards {
		l.pubs[shard] = newShardPublishers(t, sites, shard, 0)
		l.stops[shard] = keepStoring(ctx, l.pubs[shard], clientsOfShard(shard, nShards, perShard))
	}
	return l
}

// stop stops every shard's publishers.
func (l *allShardsLoad) stop() {
	for _, stop := range l.stops {
		stop()
	}
}

// acked counts the Stores acked on every shard so far.
func (l *allShardsLoad) acked() int {
	n := 0
	for _, p := range l.pubs {
		n += p.ackedCount()
	}
	return n
}

// ackedMore is a condition: n more Stores acked than now.
func (l *allShardsLoad) ackedMore(n int) func() bool {
	base := l.acked()
	return func() bool { return l.acked() >= base+n }
}
