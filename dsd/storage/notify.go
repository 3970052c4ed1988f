package storage

import (
	"fmt"
	"sync"
)

// Change notification.
//
// Readers that push (dsd's GatewayLink) wait for two per-shard events
// instead of polling: the readable clock advanced, and the shard's set of
// streams changed. Each event is a broadcast channel that is closed when
// the event happens and replaced by the next waiter. The pattern that never
// misses an event is: take the channel, then look at the state (Next,
// GetStreams), then wait on the channel.
//
// Cost on the write path: the syncer takes one uncontended mutex per
// committed batch; a channel is allocated only when someone waits, and
// closed at most once per batch. Nothing blocks.

// broadcast is a wake-up for any number of waiters.
type broadcast struct {
	mu     sync.Mutex
	ch     chan struct{} // nil until someone waits
	closed bool
}

// closedChan is returned to waiters after the DB closed.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return closedChan
	}
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) fire() {
	b.mu.Lock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
	b.mu.Unlock()
}

// close wakes every waiter, now and later.
func (b *broadcast) close() {
	b.mu.Lock()
	b.closed = true
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
	b.mu.Unlock()
}

// notifier holds the broadcasts of a DB.
type notifier struct {
	readable []broadcast // per shard
	streams  []broadcast // per shard
	anyShard broadcast   // streams changed in any shard
	feed     *commitFeed // touched streams (touched.go)
}

func newNotifier(nShards int) *notifier {
	return &notifier{readable: make([]broadcast, nShards), streams: make([]broadcast, nShards), feed: newCommitFeed(nShards)}
}

// committed is called by a shard's syncer after a batch is committed and
// the readable clock advanced.
func (n *notifier) committed(shard int, readableAdvanced, streamsChanged bool) {
	if readableAdvanced {
		n.readable[shard].fire()
	}
	if streamsChanged {
		n.streams[shard].fire()
		n.anyShard.fire()
	}
}

func (n *notifier) close() {
	for i := range n.readable {
		n.readable[i].close()
		n.streams[i].close()
	}
	n.anyShard.close()
	n.feed.close()
}

// ReadableClockChanged returns a channel that is closed the next time the
// shard's readable clock advances (a commit's fsync returned, or an idle
// tick), or when the DB closes. Take the channel before calling Next: then
// data committed after that Next closes it, and no wake-up is missed.
//
// A stream with varying levels in the current generation only becomes
// readable when its epoch completes, so several wake-ups may find nothing
// new for it. Nil for a shard that does not exist.
func (db *DB) ReadableClockChanged(shard int) <-chan struct{} {
	if shard < 0 || shard >= len(db.shards) {
		return nil
	}
	return db.notify.readable[shard].wait()
}

// StreamsChanged returns a channel that is closed the next time the set of
// streams of the shard (or, with shard = -1, of any shard) may have changed:
// a topic structure was learned in the current generation, or a generation
// was added or dropped; and when the DB closes. Take the channel before
// calling GetStreams. The event fires after the commit that made the change
// durable. Nil for a shard that does not exist.
func (db *DB) StreamsChanged(shard int) <-chan struct{} {
	if shard == -1 {
		return db.notify.anyShard.wait()
	}
	if shard < 0 || shard >= len(db.shards) {
		return nil
	}
	return db.notify.streams[shard].wait()
}

// IteratorStream returns the stream an iterator reads, so that a caller can
// wait on its shard's events. It decodes the bytes only: a stream that no
// longer exists is found by Next. Bad bytes fail with ErrInvalidIterator.
func (db *DB) IteratorStream(it []byte) (Stream, error) {
	d, err := decodeIterator(it)
	if err != nil {
		return Stream{}, err
	}
	if int64(d.Shard) >= int64(len(db.shards)) {
		return Stream{}, fmt.Errorf("%w: shard %d does not exist", ErrInvalidIterator, d.Shard)
	}
	return Stream{Shard: int(d.Shard), Generation: d.Generation, StaticIndex: d.StaticIndex}, nil
}
