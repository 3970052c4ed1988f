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

// BenchmarkReplay drives one durable session through a replay: dsd pushes
// batches of 100 QoS 1 messages on each of the subscription's streams as
// fast as the session acknowledges them (AckRead), every commit is done at
// once, and the client acknowledges each PUBLISH as it arrives, in a window
// of Receive Maximum; the driver reports each round's PUBLISHes written.
// One op is one message delivered and acknowledged: the machine's CPU per
// replayed message, without I/O.
func BenchmarkReplay(b *testing.B) {
	for _, c := range []struct{ streams, recvMax int }{{1, 20}, {16, 20}, {16, 256}, {64, 256}} {
		b.Run(fmt.Sprintf("streams=%d/receive_max=%d", c.streams, c.recvMax), func(b *testing.B) {
			benchReplay(b, c.streams, c.recvMax)
		})
	}
}

func benchReplay(b *testing.B, streams, recvMax int) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.NewClientID = func() string { return "auto" }
	m := New(cfg, now)
	c := &packet.Connect{Version: packet.V5, ClientID: "c1"}
	c.Properties.SessionExpiryInterval = 3600
	c.Properties.ReceiveMaximum = uint16(recvMax)
	c.Properties.Present.Add(packet.PropSessionExpiryInterval)
	c.Properties.Present.Add(packet.PropReceiveMaximum)
	m.Packet(now, c)
	m.ConnectDone(now, ConnectResult{Guard: 1})

	// The messages every batch carries, by stream: the machine keeps no
	// reference once they are acknowledged.
	batches := make([][]*storagev1.Message, streams)
	for i := range batches {
		for j := range cfg.BatchSize {
			batches[i] = append(batches[i], &storagev1.Message{Topic: fmt.Sprintf("s/%d", i), Qos: 1, Payload: fmt.Appendf(nil, "m%d", j)})
		}
	}
	type read struct {
		stream           int
		window, inflight int
		seq              uint64
		unacked          map[uint64]int
	}
	var (
		commits []Commit
		reads   = map[uint64]*read{}
		ready   []uint64 // reads that may have window for a batch
		acks    []uint16
		written int
	)
	nextStream := 0
	do := func(acts []Action) {
		for _, a := range acts {
			switch a := a.(type) {
			case Commit:
				commits = append(commits, a)
			case AddRead:
				reads[a.Entry] = &read{stream: nextStream % streams, window: int(a.Window), unacked: map[uint64]int{}}
				nextStream++
				ready = append(ready, a.Entry)
			case AckRead:
				r := reads[a.Entry]
				r.inflight -= r.unacked[a.BatchSeq]
				delete(r.unacked, a.BatchSeq)
				ready = append(ready, a.Entry)
			case Send:
				if p, ok := a.Packet.(*packet.Publish); ok {
					acks = append(acks, p.PacketID)
					written++
				}
			}
		}
	}
	do(m.Packet(now, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "s/+", QoS: 1}}}))
	do(m.WatermarksDone(now, 1, []int64{1}, nil))
	for len(commits) > 0 {
		cm := commits[0]
		commits = commits[1:]
		do(m.CommitDone(now, cm.Seq, nil))
	}
	var ann []AnnouncedStream
	for i := range streams {
		s := fmt.Sprintf("%03d", i)
		ann = append(ann, AnnouncedStream{Stream: StreamID{Shard: uint32(i % 16), Generation: 1, StaticIndex: s}, Iterator: []byte(s)})
	}
	do(m.Announced(now, 1, ann))

	b.ReportAllocs()
	delivered := 0
	for delivered < b.N {
		switch {
		case len(commits) > 0:
			cm := commits[0]
			commits = commits[1:]
			do(m.CommitDone(now, cm.Seq, nil))
		case len(ready) > 0:
			// dsd pushes while the entry's window has room for a batch.
			e := ready[0]
			ready = ready[1:]
			r := reads[e]
			msgs := batches[r.stream]
			if r.inflight+len(msgs) > r.window {
				continue
			}
			r.seq++
			r.inflight += len(msgs)
			r.unacked[r.seq] = len(msgs)
			ready = append(ready, e)
			do(m.Batch(now, e, r.seq, msgs, fmt.Appendf(nil, "%d", r.seq), false))
		case written > 0:
			n := written
			written = 0
			do(m.Written(now, n))
		case len(acks) > 0:
			id := acks[0]
			acks = acks[1:]
			delivered++
			now = now.Add(10 * time.Microsecond) // lazy commits start every 5,000 messages
			do(m.Packet(now, &packet.Puback{PacketID: id}))
		default:
			b.Fatalf("stalled after %d deliveries", delivered)
		}
	}
}
