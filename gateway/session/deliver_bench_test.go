package session

import (
	"fmt"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// BenchmarkFanoutSession is one subscriber of fan-out as the machine sees
// it: a durable session with one subscription over 8 streams, each
// delivery a pushed batch of one QoS 1 message, its PUBLISH written and
// acknowledged, commits answered at once. One op is one delivery.
func BenchmarkFanoutSession(b *testing.B) {
	for _, streams := range []int{8, 64} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			defer func(c bool) { checkSettling = c }(checkSettling)
			checkSettling = false
			benchFanoutSession(b, streams)
		})
	}
}

func benchFanoutSession(b *testing.B, streams int) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.NewClientID = func() string { return "auto" }
	m := New(cfg, now)
	c := &packet.Connect{Version: packet.V5, ClientID: "c1"}
	c.Properties.SessionExpiryInterval = 3600
	c.Properties.Present.Add(packet.PropSessionExpiryInterval)
	m.Packet(now, c)
	m.ConnectDone(now, ConnectResult{Guard: 1})
	reads := map[string]uint64{}
	var pubs []uint16
	var do func(acts []Action)
	do = func(acts []Action) {
		for _, a := range acts {
			switch a := a.(type) {
			case Commit:
				do(m.CommitDone(now, a.Seq, nil))
			case AddRead:
				reads[string(a.Iterator)] = a.Entry
			case Send:
				if p, ok := a.Packet.(*packet.Publish); ok {
					pubs = append(pubs, p.PacketID)
				}
			}
		}
	}
	do(m.Packet(now, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "#", QoS: 1}}}))
	do(m.WatermarksDone(now, 1, []int64{1}, nil))
	var ann []AnnouncedStream
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprintf("s%d", i)
		ann = append(ann, AnnouncedStream{Stream: StreamID{Generation: 1, StaticIndex: names[i]}, Iterator: []byte(names[i])})
	}
	do(m.Announced(now, 1, ann))
	msgs := make([][]*storagev1.Message, streams)
	for i, s := range names {
		msgs[i] = []*storagev1.Message{{Topic: s, Qos: 1, Payload: []byte("payload")}}
	}
	seqs := make([]uint64, streams)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % streams
		now = now.Add(10 * time.Microsecond)
		seqs[k]++
		do(m.Batch(now, reads[names[k]], seqs[k], msgs[k], []byte(fmt.Sprint(names[k], "/", seqs[k])), false))
		sent := pubs
		pubs = nil
		do(m.Written(now, len(sent)))
		for _, id := range sent {
			do(m.Packet(now, &packet.Puback{PacketID: id}))
		}
	}
	b.StopTimer()
	if m.Inflight() != 0 {
		b.Fatalf("inflight %d at the end", m.Inflight())
	}
}
