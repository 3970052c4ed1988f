package checker

import (
	"bytes"
	"testing"
)

func TestLostClasses(t *testing.T) {
	var h History
	for seq := uint64(1); seq <= 10; seq++ {
		pub(&h, "p", "t", seq, true)
	}
	pub(&h, "q", "t", 1, true)
	for _, seq := range []uint64{3, 4, 5, 7, 8} {
		deliver(&h, "r", "p", "t", seq)
	}
	r := Check(h.Events(), Options{})
	want := map[string]LostClasses{"p": {Prefix: 2, Middle: 1, Postfix: 2}, "q": {All: 1}}
	if len(r.LostBy) != 2 || r.LostBy["p"] != want["p"] || r.LostBy["q"] != want["q"] {
		t.Fatalf("LostBy = %v, want %v", r.LostBy, want)
	}
	classes := map[uint64]string{}
	for _, m := range r.Lost {
		if m.ID.Publisher == "p" {
			classes[m.ID.Seq] = m.Class
		}
	}
	if classes[1] != LostPrefix || classes[6] != LostMiddle || classes[10] != LostPostfix {
		t.Fatalf("classes = %v", classes)
	}
	if r.OK(Options{AllowDuplicates: true}) {
		t.Fatal("a history with loss judged OK")
	}

	// Nothing lost: no classes.
	var ok History
	pub(&ok, "p", "t", 1, true)
	deliver(&ok, "r", "p", "t", 1)
	if r := Check(ok.Events(), Options{}); r.LostBy != nil || !r.OK(Options{}) {
		t.Fatalf("clean history: %v", r)
	}
}

func deliverQoS(h *History, reader, publisher, topic string, seq uint64, qos int, dup bool) {
	h.Add(Event{Kind: Deliver, Reader: reader, Publisher: publisher, Topic: topic, Seq: seq, QoS: qos, Dup: dup})
}

func TestDuplicatesByQoS(t *testing.T) {
	// QoS 1 redeliveries are allowed and counted.
	var h1 History
	pub(&h1, "p", "t", 1, true)
	deliverQoS(&h1, "r", "p", "t", 1, 1, false)
	deliverQoS(&h1, "r", "p", "t", 1, 1, true)
	r := Check(h1.Events(), Options{})
	if !r.OK(Options{}) || r.Redeliveries != 1 || len(r.Duplicates) != 1 || len(r.QoS2Duplicates) != 0 {
		t.Fatalf("QoS 1 redelivery: %v", r)
	}

	// QoS 2 duplicates are never allowed.
	var h2 History
	pub(&h2, "p", "t", 1, true)
	deliverQoS(&h2, "r", "p", "t", 1, 2, false)
	deliverQoS(&h2, "r", "p", "t", 1, 2, true)
	r = Check(h2.Events(), Options{})
	if r.OK(Options{AllowDuplicates: true}) || len(r.QoS2Duplicates) != 1 || r.Redeliveries != 0 {
		t.Fatalf("QoS 2 duplicate: %v", r)
	}

	// A first delivery at QoS 2 makes a repeat a QoS 2 duplicate too.
	var h3 History
	pub(&h3, "p", "t", 1, true)
	deliverQoS(&h3, "r", "p", "t", 1, 2, false)
	deliverQoS(&h3, "r", "p", "t", 1, 1, true)
	if r := Check(h3.Events(), Options{}); len(r.QoS2Duplicates) != 1 {
		t.Fatalf("mixed QoS duplicate: %v", r)
	}

	// Without a QoS the old rule holds: allowed only when asked.
	var h0 History
	pub(&h0, "p", "t", 1, true)
	deliver(&h0, "r", "p", "t", 1)
	deliver(&h0, "r", "p", "t", 1)
	r = Check(h0.Events(), Options{})
	if r.OK(Options{}) || !r.OK(Options{AllowDuplicates: true}) {
		t.Fatalf("QoS 0 duplicate: %v", r)
	}
}

// retainedPub records a retained publish; acked says whether it was acked.
func retainedPub(h *History, publisher, topic string, seq uint64, acked bool) {
	h.Add(Event{Kind: Invoke, Publisher: publisher, Topic: topic, Seq: seq, QoS: 1, Retain: true})
	if acked {
		h.Add(Event{Kind: Ack, Publisher: publisher, Topic: topic, Seq: seq})
	}
}

func deliverRetained(h *History, reader, publisher, topic string, seq uint64) {
	h.Add(Event{Kind: Deliver, Reader: reader, Publisher: publisher, Topic: topic, Seq: seq, QoS: 1, Retain: true})
}

func subscribe(h *History, reader, filter string, qos int) {
	h.Add(Event{Kind: Subscribe, Reader: reader, Topic: filter, QoS: qos})
}

func TestRetained(t *testing.T) {
	base := func() *History {
		var h History
		retainedPub(&h, "p", "s/1", 1, true)
		retainedPub(&h, "p", "s/1", 2, true)
		retainedPub(&h, "p", "s/2", 3, true)
		subscribe(&h, "late", "s/+", 1)
		return &h
	}
	cases := []struct {
		name             string
		got              []uint64 // retained deliveries: seq 1 and 2 on s/1, 3 on s/2
		missing, wrong   int
		concurrentUnackd bool
	}{
		{"latest values", []uint64{2, 3}, 0, 0, false},
		{"stale value", []uint64{1, 3}, 0, 1, false},
		{"missing topic", []uint64{2}, 1, 0, false},
		{"nothing", nil, 2, 0, false},
		{"unacked concurrent value", []uint64{4, 3}, 0, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := base()
			if c.concurrentUnackd {
				// Invoked before the subscription, never acked: the server
				// may have taken it after seq 2.
				retainedPub(h, "p", "s/1", 4, false)
			}
			for _, seq := range c.got {
				topic := "s/1"
				if seq == 3 {
					topic = "s/2"
				}
				deliverRetained(h, "late", "p", topic, seq)
			}
			r := Check(h.Events(), Options{})
			if len(r.RetainedMissing) != c.missing || len(r.RetainedWrong) != c.wrong {
				t.Fatalf("missing %v, wrong %v; want %d, %d", r.RetainedMissing, r.RetainedWrong, c.missing, c.wrong)
			}
			if r.OK(Options{}) != (c.missing+c.wrong == 0) {
				t.Fatalf("OK = %v for %v", r.OK(Options{}), r)
			}
			// The late reader missed the live messages: not lost, since
			// it subscribed after they were published.
			if len(r.Lost) != 0 {
				t.Fatalf("lost = %v", r.Lost)
			}
		})
	}
}

func TestRetainedNotRetainedPublish(t *testing.T) {
	var h History
	h.Add(Event{Kind: Invoke, Publisher: "p", Topic: "s/1", Seq: 1, QoS: 1})
	h.Add(Event{Kind: Ack, Publisher: "p", Topic: "s/1", Seq: 1})
	subscribe(&h, "late", "s/#", 1)
	deliverRetained(&h, "late", "p", "s/1", 1)
	r := Check(h.Events(), Options{})
	if len(r.RetainedWrong) != 1 || r.OK(Options{}) {
		t.Fatalf("a non-retained publish delivered as retained: %v", r)
	}
}

func TestSubscriptionsDecideExpectedMessages(t *testing.T) {
	var h History
	for _, rd := range []string{"r", "r2"} {
		h.Add(Event{Kind: Connack, Reader: rd, Clean: true})
		subscribe(&h, rd, "a/+", 1)
	}
	subscribe(&h, "q0", "a/+", 0)
	inv := func(topic string, seq uint64, qos int) {
		h.Add(Event{Kind: Invoke, Publisher: "p", Topic: topic, Seq: seq, QoS: qos})
		h.Add(Event{Kind: Ack, Publisher: "p", Topic: topic, Seq: seq})
	}
	inv("a/x", 1, 1) // expected at r; r2's clean start below may discard it
	inv("b/x", 2, 1) // the filters do not match
	inv("a/x", 3, 0) // QoS 0 may be lost
	h.Add(Event{Kind: Connack, Reader: "r2", Clean: true})
	inv("a/x", 4, 1) // expected at r; r2 has no subscription since its clean start
	deliverQoS(&h, "q0", "p", "a/x", 3, 0, false)
	r := Check(h.Events(), Options{Readers: []string{"r", "r2", "q0"}})
	if len(r.Lost) != 2 || r.Lost[0].ID.Seq != 1 || r.Lost[1].ID.Seq != 4 || r.Lost[0].Reader != "r" || r.Lost[1].Reader != "r" {
		t.Fatalf("lost = %v, want p#1 and p#4 at r only", r.Lost)
	}
	if r.OK(Options{}) {
		t.Fatal("loss judged OK")
	}
}

func TestSessionLostAndViolations(t *testing.T) {
	var h History
	h.Add(Event{Kind: Connack, Reader: "r"}) // first connection, no session yet: fine
	h.Add(Event{Kind: Connack, Reader: "r", SessionPresent: true})
	r := Check(h.Events(), Options{})
	if !r.OK(Options{}) {
		t.Fatalf("resumed session judged %v", r)
	}
	h.Add(Event{Kind: Connack, Reader: "r"}) // durable reconnect, session gone
	r = Check(h.Events(), Options{})
	if len(r.SessionsLost) != 1 || r.OK(Options{}) {
		t.Fatalf("lost session not reported: %v", r)
	}

	var v History
	v.Add(Event{Kind: Violation, Reader: "r", Err: "zero-packet-id"})
	v.Add(Event{Kind: Suppress, Reader: "r"})
	v.Add(Event{Kind: Fault, Err: "subscriber offline"})
	v.Add(Event{Kind: Unknown, Publisher: "p", Seq: 1, Err: "connection lost"})
	r = Check(v.Events(), Options{})
	if len(r.Violations) != 1 || r.Suppressed != 1 || r.Faults != 1 || r.Unknown != 1 || r.OK(Options{}) {
		t.Fatalf("report %v", r)
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"+/+", "/x", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/b", "a", false},
		{"$share/g/a/b", "a/b", false},
	} {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestJSONLinesNewFields(t *testing.T) {
	var h History
	h.Add(Event{Kind: Deliver, Reader: "r", Publisher: "p", Topic: "t", Seq: 1, QoS: 2, Dup: true, Retain: true})
	h.Add(Event{Kind: Connack, Reader: "r", Clean: true, SessionPresent: true})
	h.Add(Event{Kind: Unknown, Publisher: "p", Seq: 2, Err: "timeout"})
	var buf bytes.Buffer
	if err := h.WriteJSONLines(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSONLines(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range h.Events() {
		if back[i] != e {
			t.Fatalf("line %d: %+v, want %+v", i, back[i], e)
		}
	}
}
