package session

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stratamq/strata/gateway/packet"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Every test of the package checks that a targeted settleAll visits every
// stream that is ready to settle (deliver_settle.go).
func init() { checkSettling = true }

// TestPacketIDSpan: a client withholds one PUBACK while it acknowledges
// everything else. A track never has more than 32,766 seqnos between its
// durable committed seqno and the highest sent, so the id it holds is not
// used again while it holds it; the sends stop there without a stream of
// commits that cannot help (found by this test: every CommitDone started
// another commit), and go on once the PUBACK comes, with ids wrapping
// round.
func TestPacketIDSpan(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.NewClientID = func() string { return "auto" }
	m := New(cfg, now)
	c := &packet.Connect{Version: packet.V5, ClientID: "c1"}
	c.Properties.SessionExpiryInterval = 3600
	c.Properties.Present.Add(packet.PropSessionExpiryInterval)
	m.Packet(now, c)
	m.ConnectDone(now, ConnectResult{Guard: 1})

	var (
		commit   *Commit
		reads    = map[string]uint64{}
		pubs     []*packet.Publish
		unacked  = map[uint16]string{} // the client's QoS 1 ids not acknowledged
		received = map[string]bool{}
		idle     int // commits since the last PUBLISH
	)
	do := func(acts []Action) {
		for _, a := range acts {
			switch a := a.(type) {
			case Commit:
				if commit != nil {
					t.Fatal("two commits in flight")
				}
				commit = &a
			case AddRead:
				reads[string(a.Iterator)] = a.Entry
			case Send:
				p, ok := a.Packet.(*packet.Publish)
				if !ok {
					continue
				}
				if other, ok := unacked[p.PacketID]; ok {
					t.Fatalf("id %d used for %s while %s is not acknowledged", p.PacketID, p.Payload, other)
				}
				unacked[p.PacketID] = string(p.Payload)
				received[string(p.Payload)] = true
				pubs = append(pubs, p)
				idle = 0
			}
		}
	}
	// run carries out commits and has the client acknowledge all but id 1
	// (unless release) until nothing moves.
	run := func(release bool) {
		for commit != nil || len(pubs) > 0 {
			if commit != nil {
				if idle++; idle > 3 {
					t.Fatalf("commit after commit without a PUBLISH: %d sent, %d unacknowledged", len(received), len(unacked))
				}
				cm := commit
				commit = nil
				do(m.CommitDone(now, cm.Seq, nil))
				continue
			}
			batch := pubs
			pubs = nil
			for _, p := range batch {
				if p.PacketID == 1 && unacked[1] == "m0" && !release {
					continue
				}
				delete(unacked, p.PacketID)
				do(m.Packet(now, &packet.Puback{PacketID: p.PacketID}))
			}
			do(m.Written(now, len(batch)))
		}
	}

	do(m.Packet(now, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "#", QoS: 1}}}))
	do(m.WatermarksDone(now, 1, []int64{1}, nil))
	run(false)
	var ann []AnnouncedStream
	for _, s := range []string{"a", "b", "c", "d"} {
		ann = append(ann, AnnouncedStream{Stream: StreamID{Generation: 1, StaticIndex: s}, Iterator: []byte(s)})
	}
	do(m.Announced(now, 1, ann))
	// One message on a, 11,000 on each of b, c and d: 33,001 in all.
	n := 0
	for _, s := range []string{"a", "b", "c", "d"} {
		count := 11000
		if s == "a" {
			count = 1
		}
		var msgs []*storagev1.Message
		for range count {
			msgs = append(msgs, &storagev1.Message{Topic: s, Qos: 1, Payload: fmt.Appendf(nil, "m%d", n)})
			n++
		}
		do(m.Batch(now, reads[s], 1, msgs, []byte(s+"/end"), false))
		run(false)
	}
	// Seqnos 1 to 32,766 went out; 32,767 would reuse no id yet, but the
	// span from the durable committed seqno (0: id 1 is held) is full.
	if len(received) != MaxInflight {
		t.Fatalf("%d sent while id 1 is held, want %d", len(received), MaxInflight)
	}
	before := proto.Clone(seqnoTracks(m.d.t1, m.d.t2))
	delete(unacked, 1)
	do(m.Packet(now, &packet.Puback{PacketID: 1}))
	now = now.Add(cfg.CheckpointInterval)
	do(m.Checkpoint(now))
	run(true)
	if len(received) != n {
		t.Fatalf("%d of %d messages sent after the PUBACK (tracks before %v, now %v)", len(received), n, before, seqnoTracks(m.d.t1, m.d.t2))
	}
	if m.Inflight() != 0 {
		t.Fatalf("inflight %d at the end", m.Inflight())
	}
}

// TestCommitIsASnapshot: the driver marshals a Commit in another goroutine
// while the machine goes on, so a Commit shares nothing the machine changes
// later (found by the scripts: a re-SUBSCRIBE changed the subscription in
// the commit in flight, which then named a state version dsd did not have).
func TestCommitIsASnapshot(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.NewClientID = func() string { return "auto" }
	m := New(cfg, now)
	c := &packet.Connect{Version: packet.V5, ClientID: "c1"}
	c.Properties.SessionExpiryInterval = 3600
	c.Properties.Present.Add(packet.PropSessionExpiryInterval)
	m.Packet(now, c)
	m.ConnectDone(now, ConnectResult{Guard: 1})
	commitOf := func(acts []Action) *Commit {
		for _, a := range acts {
			if c, ok := a.(Commit); ok {
				return &c
			}
		}
		return nil
	}
	m.Packet(now, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "a/+", QoS: 1}}})
	first := commitOf(m.WatermarksDone(now, 1, []int64{100}, nil))
	m.CommitDone(now, first.Seq, nil)
	// A stream announced: the subscription moves to generation 1, and the
	// batch's commit carries it.
	m.Announced(now, 1, []AnnouncedStream{{Stream: StreamID{Generation: 1, StaticIndex: "s"}, Iterator: []byte("it")}})
	// (A QoS 1 record's commit is lazy: it comes RecordCommitDelay after
	// the last one started.)
	now = now.Add(cfg.RecordCommitDelay)
	cm := commitOf(m.Batch(now, 2, 1, []*storagev1.Message{{Topic: "a/x", Qos: 1}}, []byte("it1"), false))
	if cm == nil {
		t.Fatal("no commit for the batch")
	}
	before, err := proto.Marshal(cm.Commit)
	if err != nil {
		t.Fatal(err)
	}
	// While it is in flight: a re-SUBSCRIBE (new state version) and a new
	// generation.
	m.Packet(now, &packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "a/+", QoS: 2}}})
	m.Announced(now, 1, []AnnouncedStream{{Stream: StreamID{Generation: 2, StaticIndex: "s"}, Iterator: []byte("it2")}})
	m.Batch(now, 2, 2, nil, []byte("it1"), true)
	after, err := proto.Marshal(cm.Commit)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatalf("the commit in flight changed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestNotDurablePastPacketIDSpan: a session that commits nothing (expiry
// 0) frees packet ids as its client acknowledges them, so it delivers far
// more than 32,766 QoS 1 messages (found by the side-by-side benchmark: a
// clean-start subscriber stopped at exactly 32,766).
func TestNotDurablePastPacketIDSpan(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.NewClientID = func() string { return "auto" }
	m := New(cfg, now)
	m.Packet(now, &packet.Connect{Version: packet.V5, ClientID: "c1", CleanStart: true})
	m.ConnectDone(now, ConnectResult{Guard: 1})
	reads := map[string]uint64{}
	sent, acked := 0, 0
	var do func(acts []Action)
	do = func(acts []Action) {
		for _, a := range acts {
			switch a := a.(type) {
			case Commit:
				t.Fatalf("a session with expiry 0 committed: %v", a.Commit)
			case AddRead:
				reads[string(a.Iterator)] = a.Entry
			case AckRead:
				acked++
			case Send:
				if p, ok := a.Packet.(*packet.Publish); ok {
					sent++
					do(m.Written(now, 1))
					do(m.Packet(now, &packet.Puback{PacketID: p.PacketID}))
				}
			}
		}
	}
	do(m.Packet(now, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "#", QoS: 1}}}))
	do(m.WatermarksDone(now, 1, []int64{1}, nil))
	do(m.Announced(now, 1, []AnnouncedStream{{Stream: StreamID{Generation: 1, StaticIndex: "a"}, Iterator: []byte("a/0")}}))
	const batches, per = 400, 100 // 40,000 messages
	for i := range batches {
		var msgs []*storagev1.Message
		for range per {
			msgs = append(msgs, &storagev1.Message{Topic: "a", Qos: 1, Payload: []byte("x")})
		}
		if acked != i {
			t.Fatalf("batch %d: %d batches acknowledged to dsd, %d messages sent", i, acked, sent)
		}
		do(m.Batch(now, reads["a/0"], uint64(i+1), msgs, []byte(fmt.Sprintf("a/%d", i+1)), false))
	}
	if sent != batches*per {
		t.Fatalf("%d of %d messages sent", sent, batches*per)
	}
}

// TestEntryQuotaExceededDisconnects: when dsd refuses an entry because the
// gateway's link holds durable_sessions.max_link_entries, the connection
// ends with DISCONNECT 0x97 (quota exceeded), not 0x80: the SUBACK went
// out before the entry was added.
func TestEntryQuotaExceededDisconnects(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := New(DefaultConfig(), now)
	c := &packet.Connect{Version: packet.V5, ClientID: "c1"}
	c.Properties.SessionExpiryInterval = 3600
	c.Properties.Present.Add(packet.PropSessionExpiryInterval)
	m.Packet(now, c)
	m.ConnectDone(now, ConnectResult{Guard: 1})
	m.Packet(now, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "a/+", QoS: 1}}})
	var commit *Commit
	for _, a := range m.WatermarksDone(now, 1, []int64{100}, nil) {
		if c, ok := a.(Commit); ok {
			commit = &c
		}
	}
	if commit == nil {
		t.Fatal("no commit for the subscription")
	}
	var watch *AddWatch
	for _, a := range m.CommitDone(now, commit.Seq, nil) {
		if w, ok := a.(AddWatch); ok {
			watch = &w
		}
	}
	if watch == nil {
		t.Fatal("no watch added after SUBACK")
	}
	acts := m.EntryFailed(now, watch.Entry, EntryError, fmt.Errorf("dsdbackend: entry 7: %w: ResourceExhausted: max_link_entries = 3", ErrQuotaExceeded))
	var code packet.ReasonCode
	closed := false
	for _, a := range acts {
		switch a := a.(type) {
		case Send:
			if d, ok := a.Packet.(*packet.Disconnect); ok {
				code = d.ReasonCode
			}
		case Close:
			closed = true
		}
	}
	if code != packet.QuotaExceeded || !closed {
		t.Fatalf("actions %v: want DISCONNECT 0x97 and Close", acts)
	}
}

// connectedDurable returns a machine with a durable MQTT 5 session open.
func connectedDurable(t *testing.T, now time.Time) *Machine {
	t.Helper()
	m := New(DefaultConfig(), now)
	c := &packet.Connect{Version: packet.V5, ClientID: "c1"}
	c.Properties.SessionExpiryInterval = 3600
	c.Properties.Present.Add(packet.PropSessionExpiryInterval)
	m.Packet(now, c)
	m.ConnectDone(now, ConnectResult{Guard: 1})
	return m
}

func filters(prefix string, n int) []packet.Subscription {
	out := make([]packet.Subscription, n)
	for i := range out {
		out[i] = packet.Subscription{Filter: fmt.Sprintf("%s/%d", prefix, i), QoS: 1}
	}
	return out
}

// TestSubscriptionLimitCountsPendingGrants: the subscription limit
// (1,000) holds for one SUBSCRIBE with more filters, and for SUBSCRIBEs
// queued behind one still waiting for dsd: grants not yet carried out
// count.
func TestSubscriptionLimitCountsPendingGrants(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := connectedDurable(t, now)
	// One SUBSCRIBE of 1,500 filters, then one of 600 queued behind it.
	m.Packet(now, &packet.Subscribe{PacketID: 1, Subscriptions: filters("a", 1500)})
	m.Packet(now, &packet.Subscribe{PacketID: 2, Subscriptions: filters("b", 600)})
	granted := func(op *subOp) (n int) {
		for _, c := range op.codes {
			if c < 0x80 {
				n++
			} else if c != packet.QuotaExceeded {
				t.Fatalf("refused with %v, want quota exceeded", c)
			}
		}
		return n
	}
	if len(m.d.ops.queue) != 2 {
		t.Fatalf("%d operations queued, want 2", len(m.d.ops.queue))
	}
	if g1, g2 := granted(m.d.ops.queue[0]), granted(m.d.ops.queue[1]); g1 != 1000 || g2 != 0 {
		t.Fatalf("granted %d and %d filters, want 1000 and 0 (limit 1000)", g1, g2)
	}
	// A filter granted again (already pending) is not a new subscription.
	m.Packet(now, &packet.Subscribe{PacketID: 3, Subscriptions: []packet.Subscription{{Filter: "a/7", QoS: 0}}})
	if g := granted(m.d.ops.queue[2]); g != 1 {
		t.Fatalf("re-subscribing a pending filter: granted %d, want 1", g)
	}
}

// TestQueuedSubscribeOpsAreBounded: a client that keeps sending SUBSCRIBE
// while dsd has not answered is disconnected with Quota exceeded once 64
// are queued, instead of queueing without bound.
func TestQueuedSubscribeOpsAreBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := connectedDurable(t, now)
	var last []Action
	for i := range maxQueuedSubOps + 1 {
		last = m.Packet(now, &packet.Subscribe{PacketID: uint16(i + 1), Subscriptions: filters(fmt.Sprintf("q%d", i), 1)})
	}
	var code packet.ReasonCode
	for _, a := range last {
		if s, ok := a.(Send); ok {
			if d, ok := s.Packet.(*packet.Disconnect); ok {
				code = d.ReasonCode
			}
		}
	}
	if code != packet.QuotaExceeded || !m.Closed() {
		t.Fatalf("SUBSCRIBE %d queued: DISCONNECT %v, closed %v; want 0x97 and closed", maxQueuedSubOps+1, code, m.Closed())
	}
}
