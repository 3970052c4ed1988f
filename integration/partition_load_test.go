package integration

import (
	"context"
	"fmt"
	"slices"
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

// storeAck is one acknowledged Store: when it was sent (its last attempt)
// and answered, and by which site.
type storeAck struct {
	payload  string
	sent, at time.Time
	site     int
}

// partitionLoad stores into every shard of proxiedSites with producer
// sequence numbers (every other publisher's messages QoS 2 with packet
// ids), each Store retried until acked: at the site the last refusal named
// (by its proxy address), else at the leader the term watch sees, else at
// the next site. Attempts time out after a second, so a publisher stuck
// on a cut-off leader moves on.
type partitionLoad struct {
	t       *testing.T
	ps      *proxiedSites
	w       *termWatch
	nShards int
	clients []*client.Client
	mu      sync.Mutex
	acks    []storeAck
	shardOf map[string]int // acked payload → shard
	target  map[int]int    // shard → site to try first
	retries int
}

func newPartitionLoad(t *testing.T, ps *proxiedSites, w *termWatch, nShards int) *partitionLoad {
	l := &partitionLoad{t: t, ps: ps, w: w, nShards: nShards, shardOf: map[string]int{}, target: map[int]int{}}
	for _, d := range ps.sites {
		c, err := client.Dial(d.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		l.clients = append(l.clients, c)
	}
	return l
}

func storeReq(cid string, seq int, qos2 bool) *dsdv1.StoreRequest {
	payload := fmt.Sprintf("%s/%d", cid, seq)
	m := &storagev1.Message{Topic: "t/" + cid, Payload: []byte(payload), Qos: 1}
	p := &dsdv1.Producer{ClientId: cid, Epoch: 1, FirstSeq: uint64(seq)}
	if qos2 {
		m.Qos = 2
		p.Qos2PacketIds = []uint32{uint32(seq%65535 + 1)}
	}
	return &dsdv1.StoreRequest{ClientId: cid, Messages: []*storagev1.Message{m}, Producer: p}
}

// attempt sends req once to site i; on a refusal it returns the site the
// refusal names (-1: none).
func (l *partitionLoad) attempt(ctx context.Context, i int, req *dsdv1.StoreRequest, timeout time.Duration) (named int, err error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := l.clients[i].Storage.Store(cctx, req)
	if err != nil {
		named = -1
		if m := leaderAddrRE.FindStringSubmatch(status.Convert(err).Message()); m != nil {
			named = l.ps.siteOf(m[1])
		}
		return named, err
	}
	if r := res.GetResult(); r != dsdv1.StoreResult_STORE_RESULT_STORED && r != dsdv1.StoreResult_STORE_RESULT_DUPLICATE {
		l.t.Errorf("Store %s at site %d: %v", req.GetMessages()[0].GetPayload(), i, r)
	}
	return i, nil
}

// store stores cid's message seq of shard until it is acked (true) or
// stop is closed or ctx ends (false: not counted). Sites in avoid are not
// tried (a client on the majority side of a partition).
func (l *partitionLoad) store(ctx context.Context, stop <-chan struct{}, shard int, cid string, seq int, qos2 bool, timeout time.Duration, avoid ...int) bool {
	req := storeReq(cid, seq, qos2)
	for ctx.Err() == nil {
		select {
		case <-stop:
			return false
		default:
		}
		l.mu.Lock()
		to := l.target[shard]
		l.mu.Unlock()
		for slices.Contains(avoid, to) {
			to = (to + 1) % len(l.clients)
		}
		sent := time.Now()
		named, err := l.attempt(ctx, to, req, timeout)
		if err == nil {
			l.mu.Lock()
			l.acks = append(l.acks, storeAck{payload: string(req.GetMessages()[0].GetPayload()), sent: sent, at: time.Now(), site: to})
			l.shardOf[string(req.GetMessages()[0].GetPayload())] = shard
			l.mu.Unlock()
			return true
		}
		l.mu.Lock()
		l.retries++
		if slices.Contains(avoid, named) {
			named = -1 // a client on the other side of a partition cannot go there
		}
		leader := l.w.leaderOf(shard, append(avoid, to)...)
		switch {
		case named >= 0:
			l.target[shard] = named
		case leader >= 0:
			l.target[shard] = leader
		case l.target[shard] == to:
			l.target[shard] = (to + 1) % len(l.clients)
		}
		l.mu.Unlock()
		if named < 0 || named == to {
			// An election takes a second or two: wait for a leader the
			// metrics show (or a while), and pause before trying again.
			wait.Until(200*time.Millisecond, func() bool { return l.w.leaderOf(shard, append(avoid, to)...) >= 0 })
			time.Sleep(10 * time.Millisecond) // models: a client's pause between two refused attempts
		}
	}
	return false
}

// run starts perShard publishers per shard, storing until stop is closed;
// the returned func waits for them.
func (l *partitionLoad) run(ctx context.Context, stop <-chan struct{}, perShard int, round string) func() {
	var wg sync.WaitGroup
	for shard := range l.nShards {
		for j, cid := range prefixedClientsOfShard(round, shard, l.nShards, perShard) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := 1; l.store(ctx, stop, shard, cid, seq, j%2 == 1, time.Second); seq++ {
				}
			}()
		}
	}
	return wg.Wait
}

// ackCount is how many Stores were acked, and how many of them by a site
// other than x after since.
func (l *partitionLoad) ackCount(x int, since time.Time) (all, after int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.acks {
		if a.site != x && a.at.After(since) {
			after++
		}
	}
	return len(l.acks), after
}

// ackedBy are the acks of site x for Stores sent in [from, to).
func (l *partitionLoad) ackedBy(x int, from, to time.Time) []storeAck {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []storeAck
	for _, a := range l.acks {
		if a.site == x && !a.sent.Before(from) && a.at.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

// check reads every shard from its leader and compares it with the acked
// Stores: lost (acked, not read), duplicated (read more than once) and
// unexpected (read, neither acked nor one of unacked: Stores sent but
// refused or timed out, which may be stored), summed over the shards;
// found lists the payloads of unacked that were read.
func (l *partitionLoad) check(ctx context.Context, unacked ...string) (read, lost, dup, unexpected int, found []string) {
	l.t.Helper()
	seen := map[string]int{}
	for shard := range l.nShards {
		var msgs []*dsdv1.StoredMessage
		var err error
		wait.For(l.t, 10*time.Second, fmt.Sprintf("a read of shard %d its leader serves", shard), func() bool {
			leader := shardLeader(l.ps.http, shard)
			if leader < 0 {
				return false
			}
			msgs, err = readShard(ctx, l.clients[leader], shard)
			return err == nil || status.Code(err) != codes.Unavailable
		})
		if err != nil {
			l.t.Fatal(err)
		}
		read += len(msgs)
		for _, m := range msgs {
			seen[string(m.GetMessage().GetPayload())]++
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for payload := range l.shardOf {
		switch seen[payload] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	for payload, n := range seen {
		switch {
		case slices.Contains(unacked, payload):
			found = append(found, payload)
			if n > 1 {
				dup++
			}
		case !l.ackedPayload(payload):
			unexpected++
		}
	}
	return read, lost, dup, unexpected, found
}

// ackedPayload: payload was acked (l.mu held).
func (l *partitionLoad) ackedPayload(payload string) bool {
	_, ok := l.shardOf[payload]
	return ok
}

func (l *partitionLoad) ackedTotal() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.shardOf)
}

// prefixedClientsOfShard returns n client ids "prefix-i" that dsd places
// in shard.
func prefixedClientsOfShard(prefix string, shard, nShards, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if id := fmt.Sprintf("%s-%d", prefix, i); storage.ShardOf(id, nShards) == shard {
			out = append(out, id)
		}
	}
	return out
}
