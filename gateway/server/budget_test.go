package server

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// gatedStorage is a Storage whose Stores wait until open is closed, as a
// slow dsd would; Releases are counted.
type gatedStorage struct {
	*session.MemBackend
	releases atomic.Int64
	mu       sync.Mutex
	opened   bool
	held     []gatedStore
}

type gatedStore struct {
	req  session.StoreRequest
	done func(error)
}

func newGatedStorage() *gatedStorage {
	return &gatedStorage{MemBackend: session.NewMemBackend(nil, false)}
}

func (g *gatedStorage) Submit(req session.StoreRequest, done func(error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		g.held = append(g.held, gatedStore{req, done})
		return
	}
	g.MemBackend.Submit(req, done)
}

func (g *gatedStorage) Release(ctx context.Context, req session.ReleaseRequest) (bool, error) {
	g.releases.Add(1)
	return g.MemBackend.Release(ctx, req)
}

// unblock lets the Stores held so far, and every later one, through, in
// order.
func (g *gatedStorage) unblock() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.opened = true
	for _, h := range g.held {
		g.MemBackend.Submit(h.req, h.done)
	}
	g.held = nil
}

// TestInboundBudget: an MQTT 3.1.1 client (no Receive Maximum) publishing
// far more than mqtt.max_inbound_bytes while its Store is slow makes the
// gateway stop reading it, not queue everything: the connection never holds
// more than the budget plus one packet, and every message is acknowledged
// once the Store goes on.
func TestInboundBudget(t *testing.T) {
	const (
		budget  = 256 << 10
		payload = 16 << 10
		count   = 2048 // 32 MiB, more than the socket buffers hold
	)
	st := newGatedStorage()
	defer st.unblock()
	s := testServer(t, func(o *Options) {
		o.Backend, o.Storage = st.MemBackend, st
		o.Config.MQTT.MaxInboundBytes = budget
		o.BackendTimeout = time.Minute
	})
	c := newClient(t, dial(t, s, "tcp"), packet.V311)
	c.connect("flood", 0)
	sent := make(chan error, 1)
	go func() {
		for i := range count {
			b, err := (&packet.Publish{Topic: "a/b", QoS: 1, PacketID: uint16(i + 1), Payload: make([]byte, payload)}).Append(nil, packet.V311)
			if err == nil {
				_, err = c.nc.Write(b)
			}
			if err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	conn := func() *conn {
		for _, cn := range s.connections() {
			return cn
		}
		return nil
	}
	wait.For(t, 10*time.Second, "the read loop to wait for the budget", func() bool {
		cn := conn()
		if cn == nil {
			return false
		}
		cn.mu.Lock()
		defer cn.mu.Unlock()
		return cn.mu.inboundWait
	})
	st.unblock()
	for i := range count {
		ack, ok := c.mustRecv().(*packet.Puback)
		if !ok || ack.PacketID != uint16(i+1) {
			t.Fatalf("want PUBACK %d, got %+v", i+1, ack)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	cn := conn()
	cn.mu.Lock()
	peak := cn.mu.inboundPeak
	cn.mu.Unlock()
	t.Logf("the most inbound bytes held: %d (budget %d)", peak, budget)
	if limit := budget + payload + 64; peak > limit {
		t.Fatalf("the connection held %d bytes of PUBLISH not stored, want at most %d", peak, limit)
	}
}

// TestPubrelNotHeld: a PUBREL of a packet id the session does not hold is
// answered at once (MQTT 5: PUBCOMP 0x92, 3.1.1: PUBCOMP) without a call
// to the storage; one that is held is released there.
func TestPubrelNotHeld(t *testing.T) {
	st := newGatedStorage()
	st.unblock()
	s := testServer(t, func(o *Options) { o.Backend, o.Storage = st.MemBackend, st })
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		c := newClient(t, dial(t, s, "tcp"), v)
		c.connect("rel-"+v.String(), 0)
		for id := uint16(1); id <= 100; id++ {
			c.send(&packet.Pubrel{PacketID: id})
		}
		want := packet.ReasonCode(0)
		if v == packet.V5 {
			want = packet.PacketIdentifierNotFound
		}
		for id := uint16(1); id <= 100; id++ {
			comp, ok := c.mustRecv().(*packet.Pubcomp)
			if !ok || comp.PacketID != id || comp.ReasonCode != want {
				t.Fatalf("%s: want PUBCOMP %d 0x%02X, got %+v", v, id, byte(want), comp)
			}
		}
		c.send(&packet.Publish{Topic: "a", QoS: 2, PacketID: 7, Payload: []byte("x")})
		if rec, ok := c.mustRecv().(*packet.Pubrec); !ok || rec.PacketID != 7 {
			t.Fatalf("%s: want PUBREC 7, got %+v", v, rec)
		}
		c.send(&packet.Pubrel{PacketID: 7})
		if comp, ok := c.mustRecv().(*packet.Pubcomp); !ok || comp.PacketID != 7 || comp.ReasonCode != packet.Success {
			t.Fatalf("%s: want PUBCOMP 7, got %+v", v, comp)
		}
	}
	if n := st.releases.Load(); n != 2 {
		t.Fatalf("%d Release calls, want 2 (the held ids only)", n)
	}
}
