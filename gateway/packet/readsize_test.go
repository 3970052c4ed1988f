package packet

import (
	"bufio"
	"bytes"
	"testing"
)

// ReadPacketSize reports each packet's size on the wire, the bytes it
// consumed: what the gateway counts as received.
func TestReadPacketSize(t *testing.T) {
	big := &Publish{Topic: "a/b", QoS: 1, PacketID: 7, Payload: bytes.Repeat([]byte("x"), 300)}
	pkts := []Packet{
		&Connect{Version: V5, ClientID: "c1", KeepAlive: 30},
		&Publish{Topic: "t", Payload: []byte("p")},
		big,
		&Puback{PacketID: 7},
		&Pingreq{},
	}
	var wire []byte
	var sizes []int
	for _, p := range pkts {
		before := len(wire)
		var err error
		if wire, err = p.Append(wire, V5); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(wire)-before)
	}
	br := bufio.NewReader(bytes.NewReader(wire))
	for i, want := range sizes {
		v := V5
		if i == 0 {
			v = VersionUnknown
		}
		p, n, err := ReadPacketSize(br, v, 0)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if n != want || p.Type() != pkts[i].Type() {
			t.Fatalf("packet %d (%s): size %d, want %d", i, p.Type(), n, want)
		}
	}
}
