package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratamq/strata/dsd/client"
	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// shardMetric reads one strata_ds_shard_raft_* gauge of shard from the
// metrics of the dsd whose HTTP address is httpAddr; ok is false when it
// does not answer or lacks the gauge.
func shardMetric(httpAddr, name string, shard int) (float64, bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, false
	}
	m := regexp.MustCompile(fmt.Sprintf(`(?m)^strata_ds_shard_raft_%s\{shard="%d"\} (\S+)$`, name, shard)).FindSubmatch(b)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	return v, err == nil
}

// shardLeader is the index of the site (by HTTP address) that says it
// leads shard (-1: none).
func shardLeader(httpAddrs []string, shard int) int {
	for i, a := range httpAddrs {
		if v, ok := shardMetric(a, "is_leader", shard); ok && v == 1 {
			return i
		}
	}
	return -1
}

func httpAddrs(sites []*DSD) []string {
	out := make([]string, len(sites))
	for i, d := range sites {
		out[i] = d.HTTPAddr
	}
	return out
}

// clientsOfShard returns n client ids that dsd places in shard.
func clientsOfShard(shard, nShards, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if id := fmt.Sprintf("pub-%d", i); storage.ShardOf(id, nShards) == shard {
			out = append(out, id)
		}
	}
	return out
}

// readShard reads every message of one shard from the dsd c is dialed to.
func readShard(ctx context.Context, c *client.Client, shard int) ([]*dsdv1.StoredMessage, error) {
	sh := uint32(shard)
	streams, err := c.Storage.GetStreams(ctx, &dsdv1.GetStreamsRequest{TopicFilter: "#", Shard: &sh})
	if err != nil {
		return nil, err
	}
	var out []*dsdv1.StoredMessage
	for _, st := range streams.GetStreams() {
		msgs, err := c.ReadStream(ctx, st, "#", 0, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
	}
	return out, nil
}

// shardPublishers store one message per Store, with producer sequence
// numbers, in one replicated shard of sites whose addresses stay the same
// across restarts (KillAndRestart). A Store is retried until it is acked:
// at the site the last refusal named as the leader, else at the next site.
type shardPublishers struct {
	t       *testing.T
	shard   int
	http    []string
	clients []*client.Client
	index   map[string]int // gRPC address → site
	mu      sync.Mutex
	acked   map[string]bool // payloads acked: stored, or a duplicate of a stored one
	target  int
	retries int
}

var leaderAddrRE = regexp.MustCompile(`its leader is site \S+ at (\S+)`)

func newShardPublishers(t *testing.T, sites []*DSD, shard, target int) *shardPublishers {
	p := &shardPublishers{t: t, shard: shard, http: httpAddrs(sites), index: map[string]int{}, acked: map[string]bool{},
		target: target}
	for i, d := range sites {
		c, err := client.Dial(d.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		p.clients = append(p.clients, c)
		p.index[d.GRPCAddr] = i
	}
	return p
}

// store stores payload "cid/seq" until it is acked or ctx ends.
func (p *shardPublishers) store(ctx context.Context, cid string, seq int) {
	payload := fmt.Sprintf("%s/%d", cid, seq)
	req := &dsdv1.StoreRequest{ClientId: cid, Messages: []*storagev1.Message{{Topic: "t/" + cid, Payload: []byte(payload), Qos: 1}},
		Producer: &dsdv1.Producer{ClientId: cid, Epoch: 1, FirstSeq: uint64(seq)}}
	for ctx.Err() == nil {
		p.mu.Lock()
		to := p.target
		p.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		res, err := p.clients[to].Storage.Store(cctx, req)
		cancel()
		if err == nil {
			if r := res.GetResult(); r != dsdv1.StoreResult_STORE_RESULT_STORED && r != dsdv1.StoreResult_STORE_RESULT_DUPLICATE {
				p.t.Errorf("Store %s: %v", payload, r)
			}
			p.mu.Lock()
			p.acked[payload] = true
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		p.retries++
		if m := leaderAddrRE.FindStringSubmatch(status.Convert(err).Message()); m != nil {
			if i, ok := p.index[m[1]]; ok {
				p.target = i
			}
		} else if p.target == to {
			p.target = (to + 1) % len(p.clients) // a dead or leaderless site: try the next
		}
		p.mu.Unlock()
		// An election takes about a second: wait for a leader first.
		wait.Until(200*time.Millisecond, func() bool { return shardLeader(p.http, p.shard) >= 0 })
	}
}

func (p *shardPublishers) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// ackedAtLeast is a wait.For condition: n Stores acked.
func (p *shardPublishers) ackedAtLeast(n int) func() bool {
	return func() bool { return p.ackedCount() >= n }
}

// check reads the shard from site i and compares it with the acked
// payloads: lost (acked, not read), duplicated (read more than once). A
// leader just elected refuses reads until a majority has acknowledged it
// (its first heartbeats): the read is retried while it says so.
func (p *shardPublishers) check(ctx context.Context, i int) (read, lost, dup int) {
	p.t.Helper()
	var msgs []*dsdv1.StoredMessage
	var err error
	wait.For(p.t, 10*time.Second, "a read the leader serves", func() bool {
		msgs, err = readShard(ctx, p.clients[i], p.shard)
		// Not yet: the leader's read lease, or a client connection to a
		// restarted site still in its reconnect backoff.
		st := status.Convert(err)
		return err == nil || !strings.Contains(st.Message(), "has not acknowledged it") && st.Code() != codes.Unavailable
	})
	if err != nil {
		p.t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range msgs {
		seen[string(m.GetMessage().GetPayload())]++
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for payload := range p.acked {
		switch seen[payload] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	return len(msgs), lost, dup
}
