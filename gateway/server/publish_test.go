package server

import (
	"testing"

	"github.com/stratamq/strata/gateway/packet"
)

// TestPublishFlows: QoS 1 and 2 through the driver (in-memory storage):
// PUBACK and PUBREC after the Store, PUBCOMP after the Release, for both
// protocol families.
func TestPublishFlows(t *testing.T) {
	s := testServer(t)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			c := newClient(t, dial(t, s, "tcp"), v)
			if ack := c.connect("pub-"+v.String(), 30); ack.ReasonCode != packet.Success {
				t.Fatalf("CONNACK %v", ack.ReasonCode)
			}
			c.send(&packet.Publish{Topic: "a/b", Payload: []byte("0")})
			for i := uint16(1); i <= 5; i++ {
				c.send(&packet.Publish{Topic: "a/b", QoS: 1, PacketID: i, Payload: []byte("1")})
			}
			c.send(&packet.Publish{Topic: "a/c", QoS: 2, PacketID: 6, Retain: true, Payload: []byte("2")})
			for i := uint16(1); i <= 5; i++ {
				if ack, ok := c.mustRecv().(*packet.Puback); !ok || ack.PacketID != i || ack.ReasonCode != packet.Success {
					t.Fatalf("want PUBACK %d, got %+v", i, ack)
				}
			}
			if rec, ok := c.mustRecv().(*packet.Pubrec); !ok || rec.PacketID != 6 || rec.ReasonCode != packet.Success {
				t.Fatalf("want PUBREC 6, got %+v", rec)
			}
			c.send(&packet.Pubrel{PacketID: 6})
			if comp, ok := c.mustRecv().(*packet.Pubcomp); !ok || comp.PacketID != 6 || comp.ReasonCode != packet.Success {
				t.Fatalf("want PUBCOMP 6, got %+v", comp)
			}
			c.send(&packet.Disconnect{})
			c.expectClosed()
		})
	}
}
