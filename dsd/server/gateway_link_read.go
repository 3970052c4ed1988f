package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// readEntry is the state of a Read entry. The worker running its step owns
// it, but for the window (unacked, inflight), which acks change under
// link.sched.mu.
type readEntry struct {
	stream streamKey // the scheduler's index key
	it     []byte    // the position after the last pushed batch
	seq    uint64    // the last pushed batch
	// pos is storage.IteratorPosition(it), "" when it has none (nothing
	// read yet): entries of the link with equal pos share reads.
	pos    string
	window int
	batch  int

	unacked  []unackedBatch // pushed, not acked; nil when none
	inflight int            // the messages of unacked

	// shared is set for a member's reader of a shared group's stream
	// (shared_read.go); it then reads from the group's position, and it
	// is its (unchanged) start, never shared by pos. budget is the
	// member's window over all its readers of the group (link.sched.mu).
	shared *sharedReader
	budget *memberBudget
}

// unackedBatch is one pushed batch of a Read entry waiting for its ack.
type unackedBatch struct {
	seq uint64
	n   int
}

// addRead adds a Read entry: the scheduler pushes the iterator's messages
// as they become readable, within the window.
func (l *link) addRead(r *dsdv1.ReadEntry) {
	if r.GetWindow() == 0 {
		l.refuse(r.GetEntryId(), fmt.Errorf("%w: read entry %d: window must be at least 1", errInvalidRequest, r.GetEntryId()))
		return
	}
	st, err := l.s.db.IteratorStream(r.GetIterator())
	if err != nil {
		l.refuse(r.GetEntryId(), err)
		return
	}
	batch := l.s.opts.BatchSize
	if n := int(r.GetMaxBatchMessages()); n > 0 {
		batch = min(batch, n)
	}
	re := &readEntry{stream: streamKey{st.Shard, st.Generation, string(st.StaticIndex)}, window: int(r.GetWindow()), batch: batch}
	if r.GetShared() != nil {
		sr, err := l.sharedReaderOf(r, st)
		if err != nil {
			l.refuse(r.GetEntryId(), err)
			return
		}
		re.shared, re.it = sr, r.GetIterator()
		// Before its first turn: grants of this stream the member does not
		// hold never reached it, and go back to the group.
		if err := l.s.db.ReturnUnheld(l.ctx, sr.filter, sr.member, sr.guard, st, r.GetShared().GetHeld()); err != nil {
			l.refuse(r.GetEntryId(), err)
			return
		}
		e := &linkEntry{id: r.GetEntryId(), session: r.GetSession(), read: re}
		sr.ss = l.s.groups.hold(sr.filter, re.stream)
		ended, err := l.startOrRefuse(e)
		switch {
		case err != nil:
			l.s.groups.leave(e)
			l.sendError(e.id, err, ended)
		case e.l == nil: // the link is closing: never started
			l.s.groups.leave(e)
		default:
			sr.ss.join(e)
			l.sched.joinBudget(e)
		}
		return
	}
	re.moveTo(r.GetIterator())
	l.start(&linkEntry{id: r.GetEntryId(), session: r.GetSession(), read: re})
}

// moveTo sets the entry's position. Only the worker running the entry (or
// the one that claimed it for a shared read) calls it.
func (r *readEntry) moveTo(it []byte) {
	if bytes.Equal(it, r.it) {
		return // an empty read that did not move: no decode on every wake-up
	}
	r.it = it
	r.pos, _ = storage.IteratorPosition(it)
}

// stepRead is one step of a Read entry: with window left, one Next and,
// when it found messages or the end of the stream, one pushed batch. It
// reports whether the entry may have more at once (it pushed a batch). An
// error ends the entry (reported as an error event), and so does the end of
// the stream, after its batch.
func (l *link) stepRead(e *linkEntry) bool {
	if e.read.shared != nil {
		return l.stepShared(e)
	}
	r, db, opts := e.read, l.s.db, l.s.opts
	room, wakes := l.roomAndWakes(e)
	if room <= 0 {
		return false // an ack wakes the entry
	}
	pos := r.pos
	msgs, next, eos, err := readOpen(l.ctx, db, r.it, storage.Limit{Max: min(r.batch, room), MaxBytes: opts.MaxBatchBytes, StoredValues: l.storedValues})
	if err != nil {
		l.s.metrics.linkReads[linkReadError].Inc()
		if l.ctx.Err() == nil {
			l.endEntry(e, err)
		}
		return false
	}
	if len(msgs) == 0 && !eos {
		l.s.metrics.linkReads[linkReadEmpty].Inc()
		if next != nil {
			r.moveTo(next)
		}
		return false
	}
	l.s.metrics.linkReads[linkReadData].Inc()
	r.seq++
	l.pushed(e, r.seq, len(msgs))
	resp := readBatch(e.id, r.seq, msgs, next, eos)
	var shared []*linkEntry
	if pos != "" && !eos {
		shared = l.shareRead(e, resp.GetBatch(), pos, len(msgs), wakes)
	}
	sent := l.send(l.ctx, resp)
	for _, o := range shared {
		l.sched.done(o, false)
	}
	if !sent {
		return false
	}
	r.moveTo(next)
	if eos {
		l.forget(e)
		return false
	}
	return true
}

// shareRead gives the batch b that entry e read from position pos (n
// messages) to the other Read entries of the link at the same position of
// the same stream and filter, idle or queued, with window for all of it
// (one scan per gateway and stream, sent once: ReadBatch.shared). They are
// claimed (marked running) until the batch is sent; one woken by a commit
// after e's read began runs again, as that commit may hold more.
func (l *link) shareRead(e *linkEntry, b *dsdv1.ReadBatch, pos string, n int, wakes uint64) []*linkEntry {
	others := l.sched.claimAt(e, pos, n, wakes)
	if len(others) == 0 {
		return nil
	}
	its := make([][]byte, len(others))
	for i, o := range others {
		its[i] = o.read.it
	}
	moved, at, err := storage.IteratorsAt(its, b.GetIterator())
	if err != nil {
		// Invariant: claimAt took only entries of e's stream and filter.
		panic(fmt.Sprintf("dsd: shared read of entry %d: %v", e.id, err))
	}
	for i, o := range others {
		r := o.read
		r.seq++
		b.Shared = append(b.Shared, &dsdv1.SharedBatch{EntryId: o.id, BatchSeq: r.seq, Iterator: moved[i]})
		r.it, r.pos = moved[i], at // moveTo without decoding it again
	}
	l.s.metrics.linkSharedReads.Add(float64(len(others)))
	return others
}

func readBatch(id, seq uint64, msgs []storage.Entry, it []byte, eos bool) *dsdv1.GatewayLinkResponse {
	b := &dsdv1.ReadBatch{EntryId: id, BatchSeq: seq, Iterator: it, EndOfStream: eos, Messages: make([]*dsdv1.StoredMessage, len(msgs))}
	for i, m := range msgs {
		// Value when the read asked for stored values (a gateway that
		// takes them), else Message.
		b.Messages[i] = &dsdv1.StoredMessage{Key: m.Key, Message: m.Message, Value: m.Value}
	}
	return &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Batch{Batch: b}}
}

// readOpen is db.Next, refused with ErrClosed once the DB is closing: Close
// wakes every entry, and a woken entry must end rather than read a closing
// engine.
func readOpen(ctx context.Context, db *storage.DB, it []byte, lim storage.Limit) ([]storage.Entry, []byte, bool, error) {
	if err := db.Ready(); errors.Is(err, storage.ErrClosed) {
		return nil, nil, false, err
	}
	return db.Next(ctx, it, lim)
}
