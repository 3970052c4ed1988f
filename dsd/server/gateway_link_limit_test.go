package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestLinkEntryLimit: a link holds at most MaxEntries live entries; one
// more is refused with RESOURCE_EXHAUSTED naming the limit, and room
// freed by a removal is usable again.
func TestLinkEntryLimit(t *testing.T) {
	e := startLinkServer(t, GatewayLinkOptions{MaxEntries: 3})
	l := e.open()
	ev := recvAll(l)
	var ids []uint64
	for i := range 3 {
		id, err := l.AddWatch("limit/#", i%e.db.NShards(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.announcement(t); a.GetEntryId() != id {
			t.Fatalf("announcement %v, want entry %d", a, id)
		}
		ids = append(ids, id)
	}
	over, err := l.AddWatch("limit/#", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	ee := ev.entryError(t)
	if ee.GetEntryId() != over || codes.Code(ee.GetCode()) != codes.ResourceExhausted || !ee.GetEntryEnded() ||
		!strings.Contains(ee.GetMessage(), "max_link_entries = 3") {
		t.Fatalf("the entry past the limit: %v; want RESOURCE_EXHAUSTED naming max_link_entries = 3", ee)
	}
	if n := counterValue(t, e.srv.link.metrics.linkEntriesRefused); n != 1 {
		t.Errorf("strata_ds_link_entries_refused_total = %v, want 1", n)
	}
	if err := l.Remove(ids[0]); err != nil {
		t.Fatal(err)
	}
	again, err := l.AddWatch("limit/#", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a := ev.announcement(t); a.GetEntryId() != again {
		t.Fatalf("after a removal: %v, want an announcement of entry %d", a, again)
	}
}
