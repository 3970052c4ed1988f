package mqttrec

import (
	"errors"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// A QoS 2 PUBLISH resent with DUP after the connection dropped, before
// PUBREL, is not delivered again; PUBREL on the new connection releases it.
func TestQoS2DuplicateSuppressedAcrossReconnect(t *testing.T) {
	versions(t, func(t *testing.T, v packet.Version) {
		f := newFakeServer(t)
		s := NewSession(SessionOptions{})
		opts := Options{Version: v, ClientID: "sub", SessionExpiry: 300}
		c1, sc := dial(t, f, s, opts, &packet.Connack{})
		sc.send(pub(2, 7, "a/b", "one"))
		if rec := expect[*packet.Pubrec](sc); rec.PacketID != 7 {
			t.Fatalf("PUBREC %+v", rec)
		}
		sc.nc.Close() // the server drops the connection before PUBREL
		<-c1.Done()
		if !errors.Is(c1.Err(), ErrConnectionLost) {
			t.Fatalf("Err = %v, want ErrConnectionLost", c1.Err())
		}
		if got := s.Held(); len(got) != 1 || got[0] != 7 {
			t.Fatalf("held = %v, want [7]", got)
		}

		c2, sc := dial(t, f, s, opts, &packet.Connack{SessionPresent: true})
		dup := pub(2, 7, "a/b", "one")
		dup.Dup = true
		sc.send(dup)
		expect[*packet.Pubrec](sc)
		sc.send(&packet.Pubrel{PacketID: 7})
		if comp := expect[*packet.Pubcomp](sc); comp.PacketID != 7 || comp.ReasonCode != 0 {
			t.Fatalf("PUBCOMP %+v", comp)
		}
		msgs := s.Messages()
		if len(msgs) != 2 || !msgs[0].Delivered || msgs[1].Delivered || !msgs[1].Dup || msgs[1].Conn != 2 {
			t.Fatalf("messages = %+v, want one delivered, then a suppressed DUP on conn 2", msgs)
		}
		if d, sup := s.Counts(); d != 1 || sup != 1 {
			t.Fatalf("counts = %d delivered, %d suppressed", d, sup)
		}
		if len(s.Held()) != 0 || len(s.Violations()) != 0 {
			t.Fatalf("held %v, violations %v", s.Held(), s.Violations())
		}
		c2.Close()
	})
}

// PUBREL releases the identifier: the same identifier later is a new message.
func TestPubrelReleasesID(t *testing.T) {
	versions(t, func(t *testing.T, v packet.Version) {
		f := newFakeServer(t)
		s := NewSession(SessionOptions{})
		_, sc := dial(t, f, s, Options{Version: v, ClientID: "c", CleanStart: true}, &packet.Connack{})
		for _, payload := range []string{"first", "second"} {
			sc.send(pub(2, 5, "t", payload))
			expect[*packet.Pubrec](sc)
			sc.send(&packet.Pubrel{PacketID: 5})
			expect[*packet.Pubcomp](sc)
		}
		msgs := s.Messages()
		if len(msgs) != 2 || !msgs[0].Delivered || !msgs[1].Delivered || string(msgs[1].Payload) != "second" {
			t.Fatalf("messages = %+v, want both delivered", msgs)
		}
	})
}

// Every QoS 1 PUBLISH is delivered, its DUP flag recorded; QoS 0 too.
func TestQoS1DupRecorded(t *testing.T) {
	versions(t, func(t *testing.T, v packet.Version) {
		f := newFakeServer(t)
		got := make(chan Message, 10)
		s := NewSession(SessionOptions{OnMessage: func(m Message) { got <- m }})
		_, sc := dial(t, f, s, Options{Version: v, ClientID: "c", CleanStart: true}, &packet.Connack{})
		sc.send(pub(0, 0, "zero", "z"))
		sc.send(pub(1, 3, "t", "x"))
		expect[*packet.Puback](sc)
		dup := pub(1, 3, "t", "x")
		dup.Dup, dup.Retain = true, true
		sc.send(dup)
		if ack := expect[*packet.Puback](sc); ack.PacketID != 3 {
			t.Fatalf("PUBACK %+v", ack)
		}
		var ms []Message
		for range 3 {
			select {
			case m := <-got:
				ms = append(ms, m)
			case <-time.After(5 * time.Second):
				t.Fatal("OnMessage not called")
			}
		}
		if ms[0].QoS != 0 || ms[1].Dup || !ms[2].Dup || !ms[2].Retain || !ms[2].Delivered || ms[2].PacketID != 3 {
			t.Fatalf("messages = %+v", ms)
		}
		if ms[1].Time.IsZero() || ms[1].Topic != "t" || string(ms[1].Payload) != "x" {
			t.Fatalf("message fields = %+v", ms[1])
		}
	})
}

// Withheld acknowledgements are not sent until SendWithheld; the server
// reusing the identifier of an unacknowledged message is a violation.
func TestWithheldAcks(t *testing.T) {
	versions(t, func(t *testing.T, v packet.Version) {
		f := newFakeServer(t)
		s := NewSession(SessionOptions{})
		c, sc := dial(t, f, s, Options{Version: v, ClientID: "c", CleanStart: true, WithholdPuback: 2, WithholdPubrec: 1},
			&packet.Connack{})
		sc.send(pub(1, 1, "t", "a"))
		sc.send(pub(1, 2, "t", "b"))
		sc.send(pub(2, 3, "t", "c"))
		sc.send(pub(1, 4, "t", "d"))
		// Only the fourth message is acknowledged.
		if ack := expect[*packet.Puback](sc); ack.PacketID != 4 {
			t.Fatalf("first ack sent is %+v, want PUBACK 4", ack)
		}
		if c.Withheld() != 3 {
			t.Fatalf("withheld = %d, want 3", c.Withheld())
		}
		// A resend of 1 is fine; 2 for another message is a reuse. Both are
		// acknowledged at once: the withhold budget is spent.
		dup := pub(1, 1, "t", "a")
		dup.Dup = true
		sc.send(dup)
		sc.send(pub(1, 2, "t", "other"))
		for _, want := range []uint16{1, 2} {
			if ack := expect[*packet.Puback](sc); ack.PacketID != want {
				t.Fatalf("PUBACK %+v, want %d", ack, want)
			}
		}
		if n := len(s.Messages()); n != 6 {
			t.Fatalf("%d messages, want 6", n)
		}
		viol := s.Violations()
		if len(viol) != 1 || viol[0].Kind != PacketIDReuse || viol[0].PacketID != 2 {
			t.Fatalf("violations = %v, want one reuse of 2", viol)
		}
		if err := c.SendWithheld(); err != nil {
			t.Fatal(err)
		}
		var got []packet.Packet
		for range 3 {
			got = append(got, sc.recv())
		}
		if a, ok := got[0].(*packet.Puback); !ok || a.PacketID != 1 {
			t.Fatalf("withheld acks sent: %+v", got)
		}
		if a, ok := got[1].(*packet.Puback); !ok || a.PacketID != 2 {
			t.Fatalf("withheld acks sent: %+v", got)
		}
		if a, ok := got[2].(*packet.Pubrec); !ok || a.PacketID != 3 {
			t.Fatalf("withheld acks sent: %+v", got)
		}
	})
}

// A QoS 1 or 2 PUBLISH with identifier 0 is a violation, delivered but not
// acknowledged.
func TestZeroPacketID(t *testing.T) {
	f := newFakeServer(t)
	s := NewSession(SessionOptions{})
	_, sc := dial(t, f, s, Options{ClientID: "c", CleanStart: true}, &packet.Connack{})
	sc.send(pub(1, 0, "t", "a"))
	sc.send(pub(1, 9, "t", "b"))
	if ack := expect[*packet.Puback](sc); ack.PacketID != 9 {
		t.Fatalf("PUBACK %+v, want 9 only", ack)
	}
	if viol := s.Violations(); len(viol) != 1 || viol[0].Kind != ZeroPacketID {
		t.Fatalf("violations = %v", viol)
	}
}

// A PUBREL for an identifier not held is recorded and answered with PUBCOMP
// (0x92 in MQTT 5.0). A PUBREL resent on a later connection, after our
// PUBCOMP may have been lost, is not a violation.
func TestUnknownPubrel(t *testing.T) {
	versions(t, func(t *testing.T, v packet.Version) {
		f := newFakeServer(t)
		s := NewSession(SessionOptions{})
		opts := Options{Version: v, ClientID: "c"}
		c, sc := dial(t, f, s, opts, &packet.Connack{})
		sc.send(&packet.Pubrel{PacketID: 11})
		comp := expect[*packet.Pubcomp](sc)
		want := packet.Success
		if v == packet.V5 {
			want = packet.PacketIdentifierNotFound
		}
		if comp.PacketID != 11 || comp.ReasonCode != want {
			t.Fatalf("PUBCOMP %+v, want reason %v", comp, want)
		}
		if viol := s.Violations(); len(viol) != 1 || viol[0].Kind != UnknownPubrel || viol[0].PacketID != 11 {
			t.Fatalf("violations = %v", viol)
		}
		// 12: delivered and released, PUBCOMP withheld, connection lost.
		c.Withhold(packet.PUBCOMP, 1)
		sc.send(pub(2, 12, "t", "x"))
		expect[*packet.Pubrec](sc)
		sc.send(&packet.Pubrel{PacketID: 12})
		sc.send(&packet.Pubrel{PacketID: 12}) // on the same connection: a violation
		expect[*packet.Pubcomp](sc)
		sc.nc.Close()
		_, sc = dial(t, f, s, opts, &packet.Connack{SessionPresent: true})
		sc.send(&packet.Pubrel{PacketID: 12})
		if comp := expect[*packet.Pubcomp](sc); comp.ReasonCode != 0 {
			t.Fatalf("PUBCOMP for a resent PUBREL: %+v", comp)
		}
		if viol := s.Violations(); len(viol) != 2 {
			t.Fatalf("violations = %v, want 2", viol)
		}
	})
}

// Malformed bytes from the server end the connection with an error, not a
// panic; in MQTT 5.0 the client says why with DISCONNECT 0x81.
func TestMalformedFromServer(t *testing.T) {
	versions(t, func(t *testing.T, v packet.Version) {
		f := newFakeServer(t)
		s := NewSession(SessionOptions{})
		c, sc := dial(t, f, s, Options{Version: v, ClientID: "c", CleanStart: true}, &packet.Connack{})
		// PUBLISH QoS 1 whose topic length runs past the packet.
		sc.raw([]byte{0x32, 0x03, 0x00, 0x09, 'a'})
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("connection still up after a malformed packet")
		}
		if !errors.Is(c.Err(), packet.ErrMalformed) {
			t.Fatalf("Err = %v, want ErrMalformed", c.Err())
		}
		if v == packet.V5 {
			if d := expect[*packet.Disconnect](sc); d.ReasonCode != packet.MalformedPacket {
				t.Fatalf("DISCONNECT %+v", d)
			}
		}
		sc.waitClosed()
		if viol := s.Violations(); len(viol) != 1 || viol[0].Kind != Malformed {
			t.Fatalf("violations = %v", viol)
		}
	})
}

// More unacknowledged PUBLISH packets than the Receive Maximum is a
// violation (MQTT 5.0).
func TestReceiveMaximum(t *testing.T) {
	f := newFakeServer(t)
	s := NewSession(SessionOptions{})
	_, sc := dial(t, f, s, Options{ClientID: "c", CleanStart: true, ReceiveMaximum: 2, WithholdPuback: 10}, &packet.Connack{})
	for id := uint16(1); id <= 3; id++ {
		sc.send(pub(1, id, "t", "x"))
	}
	wait.For(t, 5*time.Second, "a violation", func() bool { return len(s.Violations()) > 0 })
	if viol := s.Violations(); len(viol) != 1 || viol[0].Kind != ReceiveMaximumExceeded || viol[0].PacketID != 3 {
		t.Fatalf("violations = %v", viol)
	}
}

// Session Present 1 after a clean start is a violation; Session Present 0
// drops the client's session state.
func TestSessionPresent(t *testing.T) {
	f := newFakeServer(t)
	s := NewSession(SessionOptions{})
	_, sc := dial(t, f, s, Options{ClientID: "c", CleanStart: true}, &packet.Connack{SessionPresent: true})
	sc.send(pub(2, 1, "t", "x"))
	expect[*packet.Pubrec](sc)
	if viol := s.Violations(); len(viol) != 1 || viol[0].Kind != SessionPresentAfterCleanStart {
		t.Fatalf("violations = %v", viol)
	}
	sc.nc.Close()
	_, sc = dial(t, f, s, Options{ClientID: "c"}, &packet.Connack{SessionPresent: false})
	if len(s.Held()) != 0 {
		t.Fatalf("held = %v after Session Present 0", s.Held())
	}
	sc.send(pub(2, 1, "t", "x"))
	expect[*packet.Pubrec](sc)
	if msgs := s.Messages(); len(msgs) != 2 || !msgs[1].Delivered {
		t.Fatalf("messages = %+v, want the second delivered", msgs)
	}
}

// Pause stops reading; Resume goes on.
func TestPauseResume(t *testing.T) {
	f := newFakeServer(t)
	got := make(chan Message, 1)
	s := NewSession(SessionOptions{OnMessage: func(m Message) { got <- m }})
	c, sc := dial(t, f, s, Options{ClientID: "c", CleanStart: true, Paused: true}, &packet.Connack{})
	sc.send(pub(0, 0, "t", "x"))
	select {
	case m := <-got:
		t.Fatalf("paused connection delivered %+v", m)
	case <-time.After(50 * time.Millisecond):
	}
	c.Resume()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing delivered after Resume")
	}
	c.Pause()
	if err := c.Close(); err != nil { // Close ends a paused reader
		t.Fatal(err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err = %v, want ErrClosed", c.Err())
	}
}
