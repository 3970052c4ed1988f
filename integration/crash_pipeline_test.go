package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/testutil"
)

// TestCrashDSDPipelinedPublishers kills dsd with SIGKILL 10 times while
// each of 8 publishers keeps 32 PUBLISHes in flight (its whole Receive
// Maximum), so that every kill finds Stores queued, sent on the ingest
// stream and half committed; 4 publish at QoS 1, 4 at QoS 2. dsd restarts
// on the same data and the gateway sends the unanswered Stores again on a
// new ingest stream. Every acknowledged message is delivered (lost = 0), in
// order per (publisher, topic); a QoS 1 message delivered twice carries DUP
// the second time, and a QoS 2 message reaches its QoS 2 subscriber
// exactly once.
func TestCrashDSDPipelinedPublishers(t *testing.T) {
	kills := 10
	if testutil.Torture() {
		kills = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, 1)
	addr := func() string { return c.addr(0) }
	loads := pipelinedLoads(t, ctx, addr, "pipe", 1, 4, 32)
	waitAcked := func(what string) {
		for _, l := range loads {
			l.waitAcked(t, 250, what)
		}
	}
	for i := range kills {
		waitAcked(fmt.Sprintf("load before kill %d", i+1))
		d, err := c.dsd.KillAndRestart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.dsd = d
	}
	waitAcked("load after the last kill")
	for i, l := range loads {
		rep := l.finish(t)
		if bad := undupedRepeats(l.h.Events()); len(bad) > 0 {
			t.Fatalf("QoS 1 messages delivered again without DUP: %v", bad)
		}
		// Publishes end unanswered only when the run stops (context
		// canceled), unless the gateway lost its lease during a restart.
		errs := map[string]int{}
		for _, e := range l.h.Events() {
			if e.Kind == checker.Unknown {
				errs[e.Err]++
			}
		}
		t.Logf("unknown outcomes by error: %v", errs)
		t.Logf("QoS %d, %d dsd kills with 4 publishers × 32 in flight: %s; subscriber reconnects %d", i+1, kills, rep, l.disconnects.Load())
	}
}

// pipelinedLoads starts one history per QoS (1 and 2): subs durable
// subscribers of that QoS on its publishers' topics, each of which must
// receive every message acked in it, and pubs pipelined publishers with
// inflight PUBLISHes in flight each. Subscribers are named
// <name>-sub-q<qos>[-<i>], publishers <name>-q<qos>-<i>. The loads stop
// with the test.
func pipelinedLoads(t *testing.T, ctx context.Context, addr func() string, name string, subs, pubs, inflight int) []*load {
	var loads []*load
	for _, qos := range []byte{1, 2} {
		run := newLoadRun()
		subCtx, stopSubs := context.WithCancel(ctx)
		t.Cleanup(stopSubs)
		for s := range subs {
			id := fmt.Sprintf("%s-sub-q%d", name, qos)
			if subs > 1 {
				id = fmt.Sprintf("%s-%d", id, s)
			}
			run.subscriberAt(subCtx, id, addr, fmt.Sprintf("pipe%d/#", qos), qos)
		}
		pubCtx, stopPubs := context.WithCancel(ctx)
		t.Cleanup(stopPubs)
		for p := range pubs {
			run.pipelinedPublisher(pubCtx, fmt.Sprintf("%s-q%d-%d", name, qos, p), addr, qos, inflight)
		}
		loads = append(loads, &load{loadRun: run, stopPubs: stopPubs, stopSubs: stopSubs})
	}
	return loads
}

// pipelinedPublisher publishes from one connection with inflight
// PUBLISHes outstanding: inflight workers share the client, each on its own
// topic with its own sequence (recorded as publisher id.w), so each topic's
// messages are published in order while the connection carries inflight at
// once. A worker whose publish fails records it as unknown and goes on; the
// first to see the connection gone reconnects.
func (r *loadRun) pipelinedPublisher(ctx context.Context, id string, addr func() string, qos byte, inflight int) {
	var mu sync.Mutex
	var client *paho.Client
	current := func(stale *paho.Client) *paho.Client {
		mu.Lock()
		defer mu.Unlock()
		if client != nil && client != stale {
			return client
		}
		if client != nil {
			_ = client.Disconnect(&paho.Disconnect{})
			client = nil
		}
		c, _, err := r.connect(ctx, addr, paho.ClientConfig{}, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
		if err != nil {
			return nil
		}
		client = c
		return c
	}
	for w := range inflight {
		worker := fmt.Sprintf("%s.w%d", id, w)
		topic := fmt.Sprintf("pipe%d/%s/%d", qos, id, w)
		r.pubs.Add(1)
		go func() {
			defer r.pubs.Done()
			var c *paho.Client
			for seq := uint64(0); ctx.Err() == nil; seq++ {
				if c == nil {
					if c = current(nil); c == nil {
						return
					}
				}
				r.h.Add(checker.Event{Kind: checker.Invoke, Publisher: worker, Topic: topic, Seq: seq, QoS: int(qos), TimeUs: r.now()})
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				res, err := c.Publish(pctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(fmt.Sprintf("%s/%d", worker, seq))})
				cancel()
				if err == nil && (res == nil || res.ReasonCode == 0) {
					r.h.Add(checker.Event{Kind: checker.Ack, Publisher: worker, Topic: topic, Seq: seq, QoS: int(qos), TimeUs: r.now()})
					r.acked.Add(1)
					continue
				}
				r.h.Add(checker.Event{Kind: checker.Unknown, Publisher: worker, Topic: topic, Seq: seq, QoS: int(qos), TimeUs: r.now(), Err: fmt.Sprint(err)})
				if ctx.Err() == nil {
					c = current(c) // c failed: reconnect unless another worker did
				}
			}
		}()
	}
	r.pubs.Add(1)
	go func() {
		defer r.pubs.Done()
		<-ctx.Done()
		mu.Lock()
		defer mu.Unlock()
		if client != nil {
			_ = client.Disconnect(&paho.Disconnect{})
		}
	}()
}

// undupedRepeats lists the QoS 1 deliveries of a message a reader had
// received before that do not carry DUP.
func undupedRepeats(events []checker.Event) []string {
	seen := map[string]bool{}
	var bad []string
	for _, e := range events {
		if e.Kind != checker.Deliver || e.QoS != 1 {
			continue
		}
		k := fmt.Sprintf("%s %s/%d", e.Reader, e.Publisher, e.Seq)
		if seen[k] && !e.Dup {
			bad = append(bad, k)
		}
		seen[k] = true
	}
	return bad
}
