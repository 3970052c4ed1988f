package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// fakePub is a connection whose publishes block until the test answers
// them, and which checks the window's promises as they happen.
type fakePub struct {
	t       *testing.T
	n       int // window
	started chan *fakeCall
	gone    chan struct{}
	active  atomic.Int64
	onTopic sync.Map // topic -> *atomic.Int64
}

type fakeCall struct {
	topic  string
	seq    uint64
	answer chan outcome
}

func (f *fakePub) publish(ctx context.Context, topic string, payload []byte) (outcome, error) {
	h, err := decodePayload(payload)
	if err != nil {
		f.t.Errorf("payload: %v", err)
	}
	if a := f.active.Add(1); a > int64(f.n) {
		f.t.Errorf("%d publishes in flight, window %d", a, f.n)
	}
	defer f.active.Add(-1)
	c, _ := f.onTopic.LoadOrStore(topic, new(atomic.Int64))
	if c.(*atomic.Int64).Add(1) > 1 {
		f.t.Errorf("two publishes in flight on %s", topic)
	}
	defer c.(*atomic.Int64).Add(-1)
	call := &fakeCall{topic: topic, seq: h.Seq, answer: make(chan outcome)}
	select {
	case f.started <- call:
	case <-ctx.Done():
		return unknown, ctx.Err()
	}
	out := <-call.answer
	// The payload is the publisher's until this returns: it must not have
	// been reused for another message meanwhile.
	if h2, err := decodePayload(payload); err != nil || h2.Seq != h.Seq {
		f.t.Errorf("payload of seq %d changed while in flight: %+v %v", h.Seq, h2, err)
	}
	if out == unknown {
		return unknown, fmt.Errorf("connection lost")
	}
	return out, nil
}

func (f *fakePub) done() <-chan struct{} { return f.gone }
func (f *fakePub) close()                {}

// A publisher with --inflight n keeps up to n messages in flight, never two
// on one topic, each topic's in sequence order; after a lost connection it
// lets the others end and reconnects.
func TestInflightWindow(t *testing.T) {
	for _, c := range []struct {
		inflight, devices, count, dropAt int
	}{
		{1, 1, 50, 0},
		{4, 6, 300, 0},
		{8, 3, 200, 0}, // fewer topics than the window: the window is 3
		{4, 8, 300, 120},
	} {
		t.Run(fmt.Sprintf("inflight=%d/devices=%d/drop=%d", c.inflight, c.devices, c.dropAt), func(t *testing.T) {
			cfg := defaultConfig()
			cfg.Inflight, cfg.Devices, cfg.Count, cfg.Duration, cfg.Progress = c.inflight, c.devices, c.count, 0, 0
			if err := cfg.finish(map[string]bool{"count": true}); err != nil {
				t.Fatal(err)
			}
			r := &runner{cfg: cfg}
			window := min(c.inflight, c.devices)
			started := make(chan *fakeCall)
			var mu sync.Mutex
			var conns []*fakePub
			r.testDialPub = func(context.Context, string) (pubConn, error) {
				f := &fakePub{t: t, n: window, started: started, gone: make(chan struct{})}
				mu.Lock()
				defer mu.Unlock()
				conns = append(conns, f)
				return f, nil
			}
			nConns := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(conns)
			}
			p := &publisher{r: r, name: cfg.pubName(0), topics: cfg.topicsOf(0)}
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				p.run(t.Context(), t.Context(), cfg.Count)
			}()

			lastSeq := map[string]uint64{}
			var pending []*fakeCall
			got := func(call *fakeCall) {
				if call.seq <= lastSeq[call.topic] {
					t.Errorf("seq %d on %s after %d", call.seq, call.topic, lastSeq[call.topic])
				}
				lastSeq[call.topic] = call.seq
				pending = append(pending, call)
			}
			// The window fills before anything is answered.
			for range window {
				got(<-started)
			}
			rng := rand.New(rand.NewPCG(1, uint64(c.inflight)))
			answered, dropped := 0, false
			for {
				if len(pending) == 0 {
					select {
					case call := <-started:
						got(call)
					case <-ended:
						if answered != c.count {
							t.Errorf("answered %d of %d", answered, c.count)
						}
						if want := 1 + btoi(dropped); nConns() != want {
							t.Errorf("%d connections, want %d", nConns(), want)
						}
						return
					}
					continue
				}
				select {
				case call := <-started:
					got(call)
					continue
				default:
				}
				// Answer the calls in flight in a random order.
				i := rng.IntN(len(pending))
				call := pending[i]
				pending = append(pending[:i], pending[i+1:]...)
				out := acked
				if c.dropAt > 0 && !dropped && answered == c.dropAt {
					dropped = true
					mu.Lock()
					close(conns[0].gone)
					mu.Unlock()
				}
				if dropped && nConns() == 1 {
					out = unknown
				}
				call.answer <- out
				answered++
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
