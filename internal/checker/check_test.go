package checker

import (
	"bytes"
	"testing"
)

func pub(h *History, publisher, topic string, seq uint64, acked bool) {
	h.Add(Event{Kind: Invoke, Publisher: publisher, Topic: topic, Seq: seq})
	if acked {
		h.Add(Event{Kind: Ack, Publisher: publisher, Topic: topic, Seq: seq})
	}
}

func deliver(h *History, reader, publisher, topic string, seq uint64) {
	h.Add(Event{Kind: Deliver, Reader: reader, Publisher: publisher, Topic: topic, Seq: seq})
}

func TestCleanHistory(t *testing.T) {
	var h History
	for seq := uint64(1); seq <= 3; seq++ {
		pub(&h, "p", "t", seq, true)
		deliver(&h, "r", "p", "t", seq)
	}
	pub(&h, "p", "t", 4, false) // unknown outcome, not delivered: fine
	r := Check(h.Events(), Options{})
	if !r.OK(Options{}) || r.Acked != 3 || r.Delivered != 3 || r.Recovered != 0 {
		t.Fatalf("clean history judged %v", r)
	}
}

func TestFindsEachViolation(t *testing.T) {
	var h History
	pub(&h, "p", "t", 1, true)
	pub(&h, "p", "t", 2, true)
	pub(&h, "p", "t", 3, true)
	pub(&h, "p", "u", 4, false)
	deliver(&h, "r", "p", "t", 2)
	deliver(&h, "r", "p", "t", 1) // order
	deliver(&h, "r", "p", "t", 2) // duplicate
	deliver(&h, "r", "p", "t", 9) // unexpected: never invoked
	deliver(&h, "r", "p", "t", 4) // unexpected: invoked on another topic
	// 3 is lost.
	r := Check(h.Events(), Options{})
	if len(r.Lost) != 1 || r.Lost[0].ID != (ID{"p", 3}) {
		t.Errorf("lost = %v, want p#3", r.Lost)
	}
	if len(r.OrderViolations) != 1 || r.OrderViolations[0].ID != (ID{"p", 1}) {
		t.Errorf("order = %v, want p#1", r.OrderViolations)
	}
	if len(r.Duplicates) != 1 || len(r.Unexpected) != 2 {
		t.Errorf("duplicates = %v, unexpected = %v", r.Duplicates, r.Unexpected)
	}
	if r.OK(Options{AllowDuplicates: true}) {
		t.Errorf("a history with loss judged OK: %v", r)
	}
}

func TestEveryReaderMustReceive(t *testing.T) {
	var h History
	pub(&h, "p", "t", 1, true)
	deliver(&h, "a", "p", "t", 1)
	r := Check(h.Events(), Options{Readers: []string{"a", "b"}})
	if len(r.Lost) != 1 || r.Lost[0].Reader != "b" {
		t.Fatalf("lost = %v, want p#1 at b", r.Lost)
	}
}

func TestRecoveredUnknownOutcome(t *testing.T) {
	var h History
	pub(&h, "p", "t", 1, false)
	deliver(&h, "r", "p", "t", 1)
	r := Check(h.Events(), Options{})
	if !r.OK(Options{}) || r.Recovered != 1 {
		t.Fatalf("unknown-outcome delivery: %v", r)
	}
}

func TestJSONLinesRoundTrip(t *testing.T) {
	var h History
	pub(&h, "p", "a/b", 1, true)
	deliver(&h, "r", "p", "a/b", 1)
	var buf bytes.Buffer
	if err := h.WriteJSONLines(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSONLines(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 3 || back[2] != h.Events()[2] {
		t.Fatalf("round trip: %+v", back)
	}
	if _, err := ReadJSONLines(bytes.NewBufferString("{not json\n")); err == nil {
		t.Fatal("bad line accepted")
	}
}
