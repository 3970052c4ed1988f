package mqttrec

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

func publishAsync(c *Conn, p *packet.Publish) <-chan error {
	return async(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Publish(ctx, p)
		return err
	})
}

func TestPublish(t *testing.T) {
	versions(t, func(t *testing.T, v packet.Version) {
		f := newFakeServer(t)
		s := NewSession(SessionOptions{})
		c, sc := dial(t, f, s, Options{Version: v, ClientID: "p", CleanStart: true}, &packet.Connack{})

		done := publishAsync(c, pub(0, 0, "q0", "a"))
		if p := expect[*packet.Publish](sc); p.QoS != 0 || p.Topic != "q0" {
			t.Fatalf("PUBLISH %+v", p)
		}
		if err := recvErr(t, done); err != nil {
			t.Fatal(err)
		}

		done = publishAsync(c, pub(1, 0, "q1", "b"))
		p := expect[*packet.Publish](sc)
		if p.QoS != 1 || p.PacketID == 0 || p.Dup {
			t.Fatalf("PUBLISH %+v", p)
		}
		sc.send(&packet.Puback{PacketID: p.PacketID})
		if err := recvErr(t, done); err != nil {
			t.Fatal(err)
		}

		done = publishAsync(c, &packet.Publish{QoS: 2, Topic: "q2", Payload: []byte("c"), Retain: true})
		p = expect[*packet.Publish](sc)
		if p.QoS != 2 || !p.Retain {
			t.Fatalf("PUBLISH %+v", p)
		}
		sc.send(&packet.Pubrec{PacketID: p.PacketID})
		if rel := expect[*packet.Pubrel](sc); rel.PacketID != p.PacketID {
			t.Fatalf("PUBREL %+v", rel)
		}
		sc.send(&packet.Pubcomp{PacketID: p.PacketID})
		if err := recvErr(t, done); err != nil {
			t.Fatal(err)
		}
		if s.Pending() != 0 || len(s.Violations()) != 0 {
			t.Fatalf("pending %d, violations %v", s.Pending(), s.Violations())
		}
	})
}

func TestPublishRefused(t *testing.T) {
	f := newFakeServer(t)
	s := NewSession(SessionOptions{})
	c, sc := dial(t, f, s, Options{ClientID: "p", CleanStart: true}, &packet.Connack{})
	done := publishAsync(c, pub(1, 0, "t", "x"))
	p := expect[*packet.Publish](sc)
	sc.send(&packet.Puback{PacketID: p.PacketID, ReasonCode: packet.NotAuthorized})
	if err := recvErr(t, done); !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	if s.Pending() != 0 {
		t.Fatal("refused message still pending")
	}
}

// An outbound QoS 2 message cut off by a lost connection is resent with DUP
// on the next one, and a QoS 2 message past PUBREC gets its PUBREL again.
func TestResendAfterReconnect(t *testing.T) {
	versions(t, func(t *testing.T, v packet.Version) {
		f := newFakeServer(t)
		s := NewSession(SessionOptions{})
		opts := Options{Version: v, ClientID: "p"}
		c, sc := dial(t, f, s, opts, &packet.Connack{})
		first := publishAsync(c, pub(2, 0, "t", "one"))
		p1 := expect[*packet.Publish](sc)
		second := publishAsync(c, pub(2, 0, "t", "two"))
		p2 := expect[*packet.Publish](sc)
		sc.send(&packet.Pubrec{PacketID: p2.PacketID})
		expect[*packet.Pubrel](sc)
		sc.nc.Close()
		for _, ch := range []<-chan error{first, second} {
			if err := recvErr(t, ch); !errors.Is(err, ErrConnectionLost) {
				t.Fatalf("err = %v, want ErrConnectionLost", err)
			}
		}
		if s.Pending() != 2 {
			t.Fatalf("pending = %d, want 2", s.Pending())
		}

		c, sc = dial(t, f, s, opts, &packet.Connack{SessionPresent: true})
		done := make(chan error, 1)
		go func() {
			n, err := c.Resend(context.Background())
			if err == nil && n != 2 {
				err = errors.New("not both completed")
			}
			done <- err
		}()
		if p := expect[*packet.Publish](sc); !p.Dup || p.PacketID != p1.PacketID || string(p.Payload) != "one" {
			t.Fatalf("resent PUBLISH %+v, want DUP of %d", p, p1.PacketID)
		}
		if rel := expect[*packet.Pubrel](sc); rel.PacketID != p2.PacketID {
			t.Fatalf("resent PUBREL %+v", rel)
		}
		sc.send(&packet.Pubrec{PacketID: p1.PacketID})
		sc.send(&packet.Pubcomp{PacketID: p2.PacketID})
		expect[*packet.Pubrel](sc)
		sc.send(&packet.Pubcomp{PacketID: p1.PacketID})
		if err := recvErr(t, done); err != nil {
			t.Fatal(err)
		}
		if s.Pending() != 0 {
			t.Fatalf("pending = %d", s.Pending())
		}
	})
}

func TestSubscribeUnsubscribePing(t *testing.T) {
	versions(t, func(t *testing.T, v packet.Version) {
		f := newFakeServer(t)
		c, sc := dial(t, f, NewSession(SessionOptions{}), Options{Version: v, ClientID: "s", CleanStart: true}, &packet.Connack{})
		subs := []packet.Subscription{{Filter: "a/+", QoS: 2}, {Filter: "b/#", QoS: 1}}
		var subID uint32
		if v == packet.V5 {
			subs[0].NoLocal, subs[0].RetainAsPublished, subs[0].RetainHandling = true, true, 2
			subID = 42
		}
		type subRes struct {
			codes []packet.ReasonCode
			err   error
		}
		ch := make(chan subRes, 1)
		go func() {
			codes, err := c.Subscribe(context.Background(), subID, subs...)
			ch <- subRes{codes, err}
		}()
		sp := expect[*packet.Subscribe](sc)
		if len(sp.Subscriptions) != 2 || sp.Subscriptions[0] != subs[0] {
			t.Fatalf("SUBSCRIBE %+v", sp)
		}
		if v == packet.V5 && (len(sp.Properties.SubscriptionIdentifiers) != 1 || sp.Properties.SubscriptionIdentifiers[0] != 42) {
			t.Fatalf("subscription identifier %v", sp.Properties.SubscriptionIdentifiers)
		}
		sc.send(&packet.Suback{PacketID: sp.PacketID, ReasonCodes: []packet.ReasonCode{2, 0x80}})
		r := <-ch
		if r.err != nil || len(r.codes) != 2 || r.codes[0] != 2 || r.codes[1] != 0x80 {
			t.Fatalf("Subscribe = %v, %v", r.codes, r.err)
		}

		unsub := async(func() error { _, err := c.Unsubscribe(context.Background(), "a/+"); return err })
		up := expect[*packet.Unsubscribe](sc)
		ua := &packet.Unsuback{PacketID: up.PacketID}
		if v == packet.V5 {
			ua.ReasonCodes = []packet.ReasonCode{0}
		}
		sc.send(ua)
		if err := recvErr(t, unsub); err != nil {
			t.Fatal(err)
		}

		ping := async(func() error { return c.Ping(context.Background()) })
		expect[*packet.Pingreq](sc)
		sc.send(&packet.Pingresp{})
		if err := recvErr(t, ping); err != nil {
			t.Fatal(err)
		}
	})
}

// With a keep alive the client pings on its own.
func TestKeepAlivePings(t *testing.T) {
	f := newFakeServer(t)
	_, sc := dial(t, f, NewSession(SessionOptions{}), Options{ClientID: "k", CleanStart: true, KeepAlive: 1}, &packet.Connack{})
	start := time.Now()
	expect[*packet.Pingreq](sc)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("first PINGREQ after %v, keep alive 1s", d)
	}
}

func TestDisconnectV5(t *testing.T) {
	f := newFakeServer(t)
	c, sc := dial(t, f, NewSession(SessionOptions{}), Options{ClientID: "d", SessionExpiry: 60, ReceiveMaximum: 8}, &packet.Connack{})
	d := &packet.Disconnect{ReasonCode: packet.DisconnectWithWillMessage}
	d.Properties.Present.Add(packet.PropSessionExpiryInterval)
	d.Properties.SessionExpiryInterval = 0
	if err := c.Disconnect(d); err != nil {
		t.Fatal(err)
	}
	got := expect[*packet.Disconnect](sc)
	if got.ReasonCode != packet.DisconnectWithWillMessage || !got.Properties.Present.Has(packet.PropSessionExpiryInterval) {
		t.Fatalf("DISCONNECT %+v", got)
	}
	sc.waitClosed()
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err = %v", c.Err())
	}
}

func TestServerDisconnect(t *testing.T) {
	f := newFakeServer(t)
	c, sc := dial(t, f, NewSession(SessionOptions{}), Options{ClientID: "d", CleanStart: true}, &packet.Connack{})
	sc.send(&packet.Disconnect{ReasonCode: packet.SessionTakenOver})
	<-c.Done()
	var sd *ServerDisconnectError
	if !errors.As(c.Err(), &sd) || sd.Code != packet.SessionTakenOver {
		t.Fatalf("Err = %v", c.Err())
	}
}

func TestConnectRefused(t *testing.T) {
	f := newFakeServer(t)
	ch := make(chan error, 1)
	go func() {
		_, ack, err := Connect(context.Background(), f.addr(), NewSession(SessionOptions{}), Options{Version: packet.V311, ClientID: "x"})
		if err == nil || ack == nil || ack.ReasonCode != 5 {
			t.Errorf("CONNACK %+v", ack)
		}
		ch <- err
	}()
	sc := f.accept(t, packet.V311)
	cp := expect[*packet.Connect](sc)
	if cp.Version != packet.V311 {
		t.Fatalf("CONNECT %+v", cp)
	}
	sc.send(&packet.Connack{ReasonCode: 5})
	if err := recvErr(t, ch); !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
}

func TestConnectTimeout(t *testing.T) {
	f := newFakeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	ch := make(chan error, 1)
	go func() {
		_, _, err := Connect(ctx, f.addr(), NewSession(SessionOptions{}), Options{ClientID: "x"})
		ch <- err
	}()
	sc := f.accept(t, packet.V5)
	expect[*packet.Connect](sc) // and never answer
	if err := recvErr(t, ch); err == nil {
		t.Fatal("Connect returned without CONNACK")
	}
}
