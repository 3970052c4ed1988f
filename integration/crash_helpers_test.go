package integration

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// loadRun drives publishers and subscribers that survive their broker's
// crashes (they reconnect), recording everything in a checker history.
// Payloads are "publisher/seq"; topics are chosen by seq.
type loadRun struct {
	h     *checker.History
	acked atomic.Int64
	// disconnects counts subscriber connections the broker side closed.
	disconnects atomic.Int64
	// pubs and subs are the publisher and subscriber goroutines.
	pubs, subs sync.WaitGroup
}

func newLoadRun() *loadRun { return &loadRun{h: &checker.History{}} }

func (r *loadRun) now() int64 { return time.Now().UnixMicro() }

// connect dials addr() until a CONNACK 0 comes back or ctx ends.
func (r *loadRun) connect(ctx context.Context, addr func() string, cfg paho.ClientConfig, cp *paho.Connect) (*paho.Client, *paho.Connack, error) {
	for {
		nc, err := net.DialTimeout("tcp", addr(), time.Second)
		if err == nil {
			cfg.Conn = nc
			c := paho.NewClient(cfg)
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ack, err := c.Connect(cctx, cp)
			cancel()
			if err == nil && ack.ReasonCode == 0 {
				return c, ack, nil
			}
			nc.Close()
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond): // reconnect backoff, not synchronisation
		}
	}
}

// publisher publishes seq 0, 1, 2 … at qos on fmt.Sprintf(topic, seq %
// topics) until ctx ends, one at a time; a failed publish (connection lost,
// error code) is recorded with an unknown outcome and the publisher
// reconnects and goes on with the next seq.
func (r *loadRun) publisher(ctx context.Context, id string, addr func() string, qos byte, topic string, topics int) {
	r.pubs.Add(1)
	go func() {
		defer r.pubs.Done()
		var c *paho.Client
		seq := uint64(0)
		for ctx.Err() == nil {
			if c == nil {
				var err error
				if c, _, err = r.connect(ctx, addr, paho.ClientConfig{}, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
					return
				}
			}
			t := fmt.Sprintf(topic, int(seq)%topics)
			r.h.Add(checker.Event{Kind: checker.Invoke, Publisher: id, Topic: t, Seq: seq, QoS: int(qos), TimeUs: r.now()})
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			res, err := c.Publish(pctx, &paho.Publish{Topic: t, QoS: qos, Payload: []byte(fmt.Sprintf("%s/%d", id, seq))})
			cancel()
			switch {
			case err == nil && (res == nil || res.ReasonCode == 0):
				r.h.Add(checker.Event{Kind: checker.Ack, Publisher: id, Topic: t, Seq: seq, QoS: int(qos), TimeUs: r.now()})
				r.acked.Add(1)
			default:
				// Unknown outcome: dsd may have committed it.
				r.h.Add(checker.Event{Kind: checker.Unknown, Publisher: id, Topic: t, Seq: seq, QoS: int(qos), TimeUs: r.now(), Err: fmt.Sprint(err)})
				_ = c.Disconnect(&paho.Disconnect{})
				c = nil
			}
			seq++
		}
		if c != nil {
			_ = c.Disconnect(&paho.Disconnect{})
		}
	}()
}

// subscriber keeps a durable QoS 1 session (expiry 1 h) subscribed to
// filter, reconnecting when the broker drops it; every connection after
// the first must find its session.
func (r *loadRun) subscriber(ctx context.Context, id string, addr func() string, filter string) {
	r.subscriberAt(ctx, id, addr, filter, 1)
}

// subscriberAt is subscriber with the subscription's QoS.
func (r *loadRun) subscriberAt(ctx context.Context, id string, addr func() string, filter string, qos byte) {
	subscribed := make(chan struct{})
	r.subs.Add(1)
	go func() {
		defer r.subs.Done()
		expiry := uint32(3600)
		first := true
		for ctx.Err() == nil {
			cfg := paho.ClientConfig{OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					pub, seq, ok := parsePayload(string(pr.Packet.Payload))
					if ok {
						r.h.Add(checker.Event{Kind: checker.Deliver, Reader: id, Publisher: pub, Seq: seq, Topic: pr.Packet.Topic,
							QoS: int(pr.Packet.QoS), Dup: pr.Packet.Duplicate(), TimeUs: r.now()})
					}
					return true, nil
				}}}
			c, ack, err := r.connect(ctx, addr, cfg, &paho.Connect{ClientID: id, CleanStart: first, KeepAlive: 30,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
			if err != nil {
				return
			}
			r.h.Add(checker.Event{Kind: checker.Connack, Reader: id, Clean: first, SessionPresent: ack.SessionPresent, TimeUs: r.now()})
			if first {
				// Recorded, so the checker expects what the filter covers
				// even from a reader that received nothing.
				r.h.Add(checker.Event{Kind: checker.Subscribe, Reader: id, Topic: filter, QoS: int(qos), TimeUs: r.now()})
				if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}}); err != nil {
					_ = c.Disconnect(&paho.Disconnect{})
					continue
				}
				first = false
				close(subscribed)
			}
			select {
			case <-ctx.Done():
				_ = c.Disconnect(&paho.Disconnect{})
				return
			case <-c.Done():
				r.disconnects.Add(1)
			}
		}
	}()
	select {
	case <-subscribed:
	case <-ctx.Done():
	}
}

func parsePayload(p string) (string, uint64, bool) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(p[i+1:], 10, 64)
	return p[:i], seq, err == nil
}

// settle waits until every acked message reached the readers (or within
// fails), then checks the history: nothing lost or unexpected, order per
// (publisher, topic), sessions found on every reconnect.
func (r *loadRun) settle(t *testing.T, within time.Duration) checker.Report {
	t.Helper()
	var rep checker.Report
	// Each poll checks the whole history, so poll every 50 ms, not every
	// few; on a timeout the check below reports what was lost.
	wait.Every(within, 50*time.Millisecond, func() bool {
		rep = checker.Check(r.h.Events(), checker.Options{})
		return len(rep.Lost) == 0
	})
	if !rep.OK(checker.Options{}) {
		t.Fatalf("history check failed: %s", rep)
	}
	return rep
}

// load is a loadRun with its subscriber and publishers started.
type load struct {
	*loadRun
	stopPubs, stopSubs context.CancelFunc
}

// startLoad starts one durable subscriber on filter and pubs QoS 1
// publishers on fmt.Sprintf(topic, seq % topics), all against addr().
func startLoad(ctx context.Context, addr func() string, sub, filter string, pubs int, topic string, topics int) *load {
	l := &load{loadRun: newLoadRun()}
	subCtx, stopSubs := context.WithCancel(ctx)
	pubCtx, stopPubs := context.WithCancel(ctx)
	l.stopPubs, l.stopSubs = stopPubs, stopSubs
	l.subscriber(subCtx, sub, addr, filter)
	for p := range pubs {
		l.publisher(pubCtx, fmt.Sprintf("pub-%d", p), addr, 1, topic, topics)
	}
	return l
}

// waitAcked waits for n more acknowledged publishes.
func (l *load) waitAcked(t *testing.T, n int64, what string) {
	t.Helper()
	before := l.acked.Load()
	wait.For(t, 30*time.Second, what, func() bool { return l.acked.Load() >= before+n })
}

// finish stops the publishers, checks the history once every acked
// message could arrive, and stops the subscriber.
func (l *load) finish(t *testing.T) checker.Report {
	t.Helper()
	defer func() {
		l.stopSubs()
		l.subs.Wait()
	}()
	l.stopPubs()
	l.pubs.Wait()
	return l.settle(t, 30*time.Second)
}
