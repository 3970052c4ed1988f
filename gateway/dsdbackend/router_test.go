package dsdbackend

import (
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
// once, and only requests queued for the new link are sent.
func TestRouterRoutesAndForgets(t *testing.T) {
	r := NewRouter()
	r.linkOpened() // the first link: nothing was lost
	a, b := &recordingOwner{}, &recordingOwner{}
	ra := r.AddRead(a, 1, nil, []byte("it"), 10, 0)
	wa := r.AddWatch(a, 2, nil, "x/#", []int64{0})
	rb := r.AddRead(b, 1, nil, []byte("it"), 10, 0)
	if ra == wa || ra == rb {
		t.Fatalf("entry ids reused: %d %d %d", ra, wa, rb)
	}
	r.dispatch(batchFor(ra, false))
	r.dispatch(&dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Announcement{Announcement: &dsdv1.StreamsAnnouncement{EntryId: wa}}})
	r.dispatch(batchFor(rb, true)) // b's entry ends with this batch
	r.dispatch(batchFor(rb, false))
	r.dispatch(&dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Error{Error: &dsdv1.EntryError{EntryId: wa, Code: 5, EntryEnded: true}}})
	r.dispatch(&dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Announcement{Announcement: &dsdv1.StreamsAnnouncement{EntryId: wa}}})
	r.Remove(ra)
	r.dispatch(batchFor(ra, false))
	if got := a.got(); len(got) != 3 || got[0] != "batch" || got[1] != "announced" || got[2] != "gone" {
		t.Fatalf("owner a got %v", got)
	}
	if got := b.got(); len(got) != 1 || got[0] != "batch" {
		t.Fatalf("owner b got %v", got)
	}

	// a has no entry left, b neither: a new link loses nothing of theirs.
	c := &recordingOwner{}
	r.AddRead(c, 1, nil, []byte("it"), 10, 0)
	r.linkOpened()
	if got := c.got(); len(got) != 1 || got[0] != "lost" {
		t.Fatalf("owner c got %v after the link reopened", got)
	}
	if got := a.got(); len(got) != 3 {
		t.Fatalf("owner a without entries was told %v", got)
	}
	r.mu.Lock()
	queued := len(r.mu.queue)
	r.mu.Unlock()
	if queued != 0 {
		t.Fatalf("%d requests of the old link still queued", queued)
	}
}
