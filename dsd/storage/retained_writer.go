package storage

import (
	"context"
	"time"

	"github.com/cockroachdb/pebble/v2"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// retainedWriter is the single writer of the retained keyspace: one
// goroutine owned by the DB (started by Open, stopped by Close) that decides
// every update against the current record and commits. It groups the
// requests waiting when it is free into one synced commit.
type retainedWriter struct {
	db *DB
	// reqCh is unbuffered: a successful send means the writer owns the
	// request and will answer it.
	reqCh chan *retainedReq
	// sweepCh asks for a full sweep now (tests).
	sweepCh chan chan error
	// cursor is where the next sweep chunk starts (writer only).
	cursor []byte
}

type retainedReq struct {
	updates []retainedUpdate
	// done gets exactly one reply; buffered, so the writer never blocks on a
	// caller that gave up.
	done chan retainedReply
}

type retainedReply struct {
	// deleted has one entry per update (operator deletes).
	deleted []bool
	err     error
}

// maxRetainedGroup bounds the requests of one commit.
const maxRetainedGroup = 256

// startRetained starts the retained writer; Close stops it (db.ctx, db.wg).
func (db *DB) startRetained() {
	db.retained = &retainedWriter{db: db, reqCh: make(chan *retainedReq), sweepCh: make(chan chan error)}
	db.wg.Add(1)
	go db.retained.run()
}

// do hands updates to the writer and waits for the durable outcome.
func (w *retainedWriter) do(ctx context.Context, updates []retainedUpdate) ([]bool, error) {
	if err := w.db.failErr(); err != nil {
		return nil, err
	}
	if w.db.closing.Load() {
		return nil, ErrClosed
	}
	r := &retainedReq{updates: updates, done: make(chan retainedReply, 1)}
	select {
	case w.reqCh <- r:
	case <-w.db.ctx.Done():
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case rep := <-r.done:
		return rep.deleted, rep.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (w *retainedWriter) run() {
	defer w.db.wg.Done()
	ticker := time.NewTicker(retainedSweepInterval)
	defer ticker.Stop()
	for {
		select {
		case r := <-w.reqCh:
			group := []*retainedReq{r}
		more:
			for len(group) < maxRetainedGroup {
				select {
				case r := <-w.reqCh:
					group = append(group, r)
				default:
					break more
				}
			}
			w.commit(group)
		case <-ticker.C:
			if _, err := w.sweep(retainedSweepChunk); err != nil && w.db.ctx.Err() == nil {
				w.db.log.Warn("retained sweep", "err", err)
			}
		case done := <-w.sweepCh:
			done <- w.sweepAll()
		case <-w.db.ctx.Done():
			return
		}
	}
}

// commit decides and commits the updates of a group of requests in one
// batch, then answers every request.
func (w *retainedWriter) commit(group []*retainedReq) {
	answer := func(err error) {
		for _, r := range group {
			r.done <- retainedReply{err: err}
		}
	}
	if err := w.db.failErr(); err != nil {
		answer(err)
		return
	}
	nowUs := w.db.opts.Now().UnixMicro()
	// current holds the records this group has decided so far, so that two
	// updates of one topic in one group see each other.
	current := map[string]*storagev1.RetainedRecord{}
	b := w.db.pdb.NewBatch()
	defer b.Close()
	replies := make([]retainedReply, len(group))
	for i, r := range group {
		replies[i].deleted = make([]bool, len(r.updates))
		for j, u := range r.updates {
			cur, ok := current[u.topic]
			if !ok {
				var rec storagev1.RetainedRecord
				found, err := w.db.getValue(retainedKey(u.topic), &rec)
				if err != nil {
					answer(err)
					return
				}
				if found {
					cur = &rec
				}
			}
			next, deleted := nextRetained(cur, u, nowUs)
			replies[i].deleted[j] = deleted
			if next != nil {
				current[u.topic] = next
				_ = b.Set(retainedKey(u.topic), encodeValue(next), nil)
			}
		}
	}
	if !b.Empty() {
		if err := w.db.pdb.Apply(b, w.syncMode()); err != nil {
			err = wrapPebble("commit retained", err)
			w.db.failStop(err)
			answer(err)
			return
		}
	}
	for i, r := range group {
		r.done <- replies[i]
	}
}

func (w *retainedWriter) syncMode() *pebble.WriteOptions {
	if w.db.opts.UnsafeNoSync {
		return pebble.NoSync
	}
	return pebble.Sync
}

// sweep visits up to n records from the cursor: an expired message becomes
// a tombstone, and a tombstone or expired record older than retainedGrace
// is deleted. It wraps around at the end of the keyspace and reports
// whether it did. Losing a sweep in a crash is harmless, so it does not
// sync.
func (w *retainedWriter) sweep(n int) (wrapped bool, err error) {
	if err := w.db.failErr(); err != nil {
		return false, err
	}
	nowUs := w.db.opts.Now().UnixMicro()
	horizon := nowUs - retainedGrace.Microseconds()
	prefix := retainedPrefix()
	lower := prefix
	if w.cursor != nil {
		lower = w.cursor
	}
	iter, err := w.db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return false, wrapPebble("retained sweep", err)
	}
	defer iter.Close()
	b := w.db.pdb.NewBatch()
	defer b.Close()
	visited := 0
	valid := iter.First()
	for ; valid && visited < n; valid = iter.Next() {
		visited++
		v, err := iter.ValueAndErr()
		if err != nil {
			return false, wrapPebble("retained sweep", err)
		}
		var rec storagev1.RetainedRecord
		if err := decodeValue(iter.Key(), v, &rec); err != nil {
			return false, err
		}
		if retainedLive(&rec, nowUs) {
			continue
		}
		switch {
		case rec.TimestampUs < horizon:
			_ = b.Delete(iter.Key(), nil)
		case rec.Message != nil:
			rec.Message, rec.ExpiresAtUs = nil, 0
			_ = b.Set(iter.Key(), encodeValue(&rec), nil)
		}
	}
	if err := iter.Error(); err != nil {
		return false, wrapPebble("retained sweep", err)
	}
	if valid {
		w.cursor = append(w.cursor[:0:0], iter.Key()...)
	} else {
		w.cursor, wrapped = nil, true
	}
	if b.Empty() {
		return wrapped, nil
	}
	if err := w.db.pdb.Apply(b, pebble.NoSync); err != nil {
		err = wrapPebble("retained sweep", err)
		w.db.failStop(err)
		return wrapped, err
	}
	return wrapped, nil
}

// sweepAll runs sweep chunks from the start of the keyspace to its end.
func (w *retainedWriter) sweepAll() error {
	w.cursor = nil
	for {
		wrapped, err := w.sweep(retainedSweepChunk)
		if err != nil || wrapped {
			return err
		}
	}
}

// sweepRetained runs a full sweep in the writer now (tests).
func (db *DB) sweepRetained() error {
	done := make(chan error, 1)
	select {
	case db.retained.sweepCh <- done:
	case <-db.ctx.Done():
		return ErrClosed
	}
	return <-done
}
