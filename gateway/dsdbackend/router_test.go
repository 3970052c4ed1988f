package dsdbackend

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// recordingOwner records what the router hands it.
type recordingOwner struct {
	mu     sync.Mutex
	events []string
}

func (o *recordingOwner) add(e string) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func (o *recordingOwner) Announced(token uint64, streams []session.AnnouncedStream) {
	o.add("announced")
}
func (o *recordingOwner) Batch(token, batchSeq uint64, msgs []*storagev1.Message, iterator []byte, eos bool) {
	o.add("batch")
}
func (o *recordingOwner) GrantBatch(token, batchSeq uint64, msgs []*storagev1.Message, iterator []byte, eos bool, g session.Grant) {
	o.add("grant")
}
func (o *recordingOwner) EntryFailed(token uint64, f session.EntryFailure, err error) {
	if f == session.EntryGone {
		o.add("gone")
	} else {
		o.add("failed")
	}
}
func (o *recordingOwner) EntriesLost() { o.add("lost") }

func (o *recordingOwner) got() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.events...)
}

func batchFor(id uint64, eos bool) *dsdv1.GatewayLinkResponse {
	return &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Batch{Batch: &dsdv1.ReadBatch{EntryId: id, BatchSeq: 1, EndOfStream: eos}}}
}

// TestRouterRoutesAndForgets: pushes reach the entry's owner; an entry
// that ended (end of stream, an error that ends it, Remove) gets nothing
// more; a reopened link tells each owner with entries that they are lost,
// once, and only requests queued for the new link are sent (its owners
// add their entries again when told, before the link opens).
func TestRouterRoutesAndForgets(t *testing.T) {
	r := NewRouter()
	r.linkOpened("") // the first link: nothing was lost
	a, b := &recordingOwner{}, &recordingOwner{}
	ra := r.AddRead(a, 1, nil, []byte("it"), 10, 0)
	wa := r.AddWatch(a, 2, nil, "x/#", []int64{0})
	rb := r.AddRead(b, 1, nil, []byte("it"), 10, 0)
	if ra == wa || ra == rb {
		t.Fatalf("entry ids reused: %d %d %d", ra, wa, rb)
	}
	r.dispatch("", batchFor(ra, false))
	r.dispatch("", &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Announcement{Announcement: &dsdv1.StreamsAnnouncement{EntryId: wa}}})
	r.dispatch("", batchFor(rb, true)) // b's entry ends with this batch
	r.dispatch("", batchFor(rb, false))
	r.dispatch("", &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Error{Error: &dsdv1.EntryError{EntryId: wa, Code: 5, EntryEnded: true}}})
	r.dispatch("", &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Announcement{Announcement: &dsdv1.StreamsAnnouncement{EntryId: wa}}})
	r.Remove(ra)
	r.dispatch("", batchFor(ra, false))
	if got := a.got(); len(got) != 3 || got[0] != "batch" || got[1] != "announced" || got[2] != "gone" {
		t.Fatalf("owner a got %v", got)
	}
	if got := b.got(); len(got) != 1 || got[0] != "batch" {
		t.Fatalf("owner b got %v", got)
	}

	// a has no entry left, b neither: a new link loses nothing of theirs.
	c := &recordingOwner{}
	r.AddRead(c, 1, nil, []byte("it"), 10, 0)
	r.linkClosed("")
	r.linkOpened("")
	if got := c.got(); len(got) != 1 || got[0] != "lost" {
		t.Fatalf("owner c got %v after the link reopened", got)
	}
	if got := a.got(); len(got) != 3 {
		t.Fatalf("owner a without entries was told %v", got)
	}
	r.mu.Lock()
	queued := len(r.mu.lanes[""].queue)
	r.mu.Unlock()
	if queued != 0 {
		t.Fatalf("%d requests of the old link still queued", queued)
	}
}

// TestSendBatchCoalescesAcks: consecutive BatchAcks go as one request when
// dsd takes them, in order with the other requests around them, bounded
// per request; requests of an older link generation are dropped; without
// dsd's consent each ack goes alone.
func TestSendBatchCoalescesAcks(t *testing.T) {
	ack := func(id uint64) queued {
		return queued{gen: 2, req: &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Ack{Ack: &dsdv1.BatchAck{EntryId: id, BatchSeq: 1}}}}
	}
	remove := func(id uint64) queued {
		return queued{gen: 2, req: &dsdv1.GatewayLinkRequest{Kind: &dsdv1.GatewayLinkRequest_Remove{Remove: &dsdv1.RemoveEntry{EntryId: id}}}}
	}
	stale := ack(99)
	stale.gen = 1
	batch := []queued{ack(1), ack(2), stale, ack(3), remove(4), ack(5), remove(6)}
	for i := range maxAcksPerRequest + 1 {
		batch = append(batch, ack(uint64(100+i)))
	}
	describe := func(together bool) []string {
		var out []string
		send := func(r *dsdv1.GatewayLinkRequest) error {
			switch {
			case r.GetAck() != nil:
				out = append(out, fmt.Sprintf("ack %d", r.GetAck().GetEntryId()))
			case r.GetAcks() != nil:
				as := r.GetAcks().GetAcks()
				out = append(out, fmt.Sprintf("acks %d..%d (%d)", as[0].GetEntryId(), as[len(as)-1].GetEntryId(), len(as)))
			case r.GetRemove() != nil:
				out = append(out, fmt.Sprintf("remove %d", r.GetRemove().GetEntryId()))
			}
			return nil
		}
		if err := sendBatch(send, together, batch, 2); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := describe(true)
	want := []string{"acks 1..3 (3)", "remove 4", "ack 5", "remove 6", "acks 100..1123 (1024)", "ack 1124"}
	if !slices.Equal(got, want) {
		t.Fatalf("together: %v, want %v", got, want)
	}
	if got := describe(false); len(got) != 6+maxAcksPerRequest+1 || got[0] != "ack 1" || got[2] != "ack 3" {
		t.Fatalf("alone: %d requests starting %v, want one per request", len(got), got[:4])
	}
}
