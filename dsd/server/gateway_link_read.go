package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// addRead starts a Read entry: its worker pushes the iterator's messages
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
	it, window, batch := r.GetIterator(), int(r.GetWindow()), l.s.opts.BatchSize
	if n := int(r.GetMaxBatchMessages()); n > 0 {
		batch = min(batch, n)
	}
	l.start(r.GetEntryId(), r.GetSession(), func(ctx context.Context, e *linkEntry) {
		l.runRead(ctx, e, st.Shard, it, window, batch)
	})
}

// runRead is a Read entry's worker. It reads when the entry has window
// left and either it has not read yet, or the shard's readable clock
// advanced, or its streams changed (a generation added or dropped), or
// IdlePollInterval passed; it pushes whatever Next returns. It ends at
// end of stream, on an error (reported as an error event) or when ctx ends.
func (l *link) runRead(ctx context.Context, e *linkEntry, shard int, it []byte, window, batch int) {
	db, opts := l.s.db, l.s.opts
	idle := time.NewTimer(opts.IdlePollInterval)
	defer idle.Stop()
	var seq uint64
	for {
		room := window - e.inflight()
		if room <= 0 {
			select {
			case <-ctx.Done():
				return
			case <-e.wake:
				continue
			}
		}
		// Take the channels before reading, so no commit is missed.
		readable, streams := db.ReadableClockChanged(shard), db.StreamsChanged(shard)
		msgs, next, eos, err := readOpen(ctx, db, it, storage.Limit{Max: min(batch, room), MaxBytes: opts.MaxBatchBytes})
		if err != nil {
			if ctx.Err() == nil {
				l.endEntry(e, err)
			}
			return
		}
		if len(msgs) > 0 || eos {
			seq++
			e.pushed(seq, len(msgs))
			if !l.send(ctx, readBatch(e.id, seq, msgs, next, eos)) || eos {
				return
			}
			it = next
			continue
		}
		if next != nil {
			it = next
		}
		idle.Reset(opts.IdlePollInterval)
		select {
		case <-ctx.Done():
			return
		case <-readable:
		case <-streams:
		case <-idle.C:
		}
	}
}

func readBatch(id, seq uint64, msgs []storage.Entry, it []byte, eos bool) *dsdv1.GatewayLinkResponse {
	b := &dsdv1.ReadBatch{EntryId: id, BatchSeq: seq, Iterator: it, EndOfStream: eos, Messages: make([]*dsdv1.StoredMessage, len(msgs))}
	for i, m := range msgs {
		b.Messages[i] = &dsdv1.StoredMessage{Key: m.Key, Message: m.Message}
	}
	return &dsdv1.GatewayLinkResponse{Kind: &dsdv1.GatewayLinkResponse_Batch{Batch: b}}
}

// readOpen is db.Next, refused with ErrClosed once the DB is closing: Close
// wakes every waiter, and a woken worker must stop rather than read a
// closing engine.
func readOpen(ctx context.Context, db *storage.DB, it []byte, lim storage.Limit) ([]storage.Entry, []byte, bool, error) {
	if err := db.Ready(); errors.Is(err, storage.ErrClosed) {
		return nil, nil, false, err
	}
	return db.Next(ctx, it, lim)
}
