package server

import (
	"context"
	"errors"
	"time"

	"github.com/stratamq/strata/gateway/dsdbackend"
	"github.com/stratamq/strata/gateway/session"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Delivery is what delivering messages needs of dsd
// (dsdbackend.Delivery): session commits, watermarks, replays, retained
// messages, and the router of the link's entries.
type Delivery interface {
	Commit(ctx context.Context, c *storagev1.SessionCommit) error
	Watermarks(ctx context.Context) ([]int64, error)
	Replay(ctx context.Context, iterator []byte, count uint32) ([]*storagev1.Message, error)
	Retained(ctx context.Context, filter string) ([]*storagev1.Message, error)
	Router() *dsdbackend.Router
}

// errNoDelivery answers a subscription on a gateway built without dsd
// (tests of the connection layer): SUBACK 0x80.
var errNoDelivery = errors.New("gateway: no delivery configured")

// The conn is the EntryOwner of the entries it adds: dsd's pushes reach
// its machine on the link's receiving goroutine, under mu, without
// blocking.
var _ dsdbackend.EntryOwner = (*conn)(nil)

// Announced implements dsdbackend.EntryOwner.
func (c *conn) Announced(token uint64, streams []session.AnnouncedStream) {
	defer c.recoverPanic("announced")
	c.withMachineDo(func(m *session.Machine) { c.applyLocked(m.Announced(time.Now(), token, streams)) })
}

// Batch implements dsdbackend.EntryOwner.
func (c *conn) Batch(token, batchSeq uint64, msgs []*storagev1.Message, iterator []byte, eos bool) {
	c.pushed(token, batchSeq, msgs, iterator, eos, nil)
}

// GrantBatch implements dsdbackend.EntryOwner.
func (c *conn) GrantBatch(token, batchSeq uint64, msgs []*storagev1.Message, iterator []byte, eos bool, grant session.Grant) {
	c.pushed(token, batchSeq, msgs, iterator, eos, &grant)
}

// pushed hands the machine a pushed batch (with its grant for a shared
// group's); the entry is gone after its end-of-stream batch.
func (c *conn) pushed(token, batchSeq uint64, msgs []*storagev1.Message, iterator []byte, eos bool, grant *session.Grant) {
	defer c.recoverPanic("batch")
	c.withMachineDo(func(m *session.Machine) {
		if eos {
			c.mu.entries.remove(token)
		}
		if grant != nil {
			c.applyLocked(m.GrantBatch(time.Now(), token, batchSeq, msgs, iterator, eos, *grant))
		} else {
			c.applyLocked(m.Batch(time.Now(), token, batchSeq, msgs, iterator, eos))
		}
	})
}

// EntryFailed implements dsdbackend.EntryOwner.
func (c *conn) EntryFailed(token uint64, failure session.EntryFailure, err error) {
	defer c.recoverPanic("entry failed")
	c.debug("entry ended", "client_id", c.clientID(), "err", err)
	c.withMachineDo(func(m *session.Machine) {
		c.mu.entries.remove(token)
		c.applyLocked(m.EntryFailed(time.Now(), token, failure, err))
	})
}

// EntriesLost implements dsdbackend.EntryOwner.
func (c *conn) EntriesLost() {
	defer c.recoverPanic("entries lost")
	c.withMachineDo(func(m *session.Machine) {
		c.mu.entries = nil
		c.applyLocked(m.EntriesLost(time.Now()))
	})
}

func (c *conn) clientID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.m.ClientID()
}

// applyDeliveryLocked carries out a delivery action; it reports whether a
// was one.
func (c *conn) applyDeliveryLocked(a session.Action) bool {
	d := c.s.opts.Delivery
	switch a := a.(type) {
	case session.Commit:
		if c.mu.panicked {
			return true // the machine's state is unknown: commit nothing more
		}
		c.goIO("commit", func(ctx context.Context) {
			err := deliveryCall(d, func(d Delivery) error { return d.Commit(ctx, a.Commit) })
			c.machineAnswer(func(m *session.Machine) []session.Action { return m.CommitDone(time.Now(), a.Seq, err) })
		})
	case session.Watermarks:
		c.goIO("watermarks", func(ctx context.Context) {
			var starts []int64
			err := deliveryCall(d, func(d Delivery) (err error) { starts, err = d.Watermarks(ctx); return err })
			c.machineAnswer(func(m *session.Machine) []session.Action { return m.WatermarksDone(time.Now(), a.Seq, starts, err) })
		})
	case session.Replay:
		c.goIO("replay", func(ctx context.Context) {
			var msgs []*storagev1.Message
			err := deliveryCall(d, func(d Delivery) (err error) { msgs, err = d.Replay(ctx, a.Iterator, a.Count); return err })
			c.machineAnswer(func(m *session.Machine) []session.Action { return m.Replayed(time.Now(), a.Seq, msgs, err) })
		})
	case session.FetchRetained:
		c.goIO("retained", func(ctx context.Context) {
			var msgs []*storagev1.Message
			err := deliveryCall(d, func(d Delivery) (err error) { msgs, err = d.Retained(ctx, a.Filter); return err })
			c.machineAnswer(func(m *session.Machine) []session.Action { return m.RetainedFetched(time.Now(), a.Seq, msgs, err) })
		})
	case session.AddWatch:
		if d != nil {
			c.setEntryLocked(a.Entry, d.Router().AddWatch(c, a.Entry, c.sessionRef(), a.Filter, a.StartUs))
		}
	case session.AddRead:
		switch {
		case d == nil:
		case a.Shared != nil:
			sh := &dsdv1.SharedRead{Filter: a.Shared.Filter, Qos: a.Shared.QoS, Strategy: a.Shared.Strategy, Held: a.Shared.Held}
			c.setEntryLocked(a.Entry, d.Router().AddSharedRead(c, a.Entry, c.sessionRef(), a.Iterator, a.Window, a.BatchSize, sh))
		default:
			c.setEntryLocked(a.Entry, d.Router().AddRead(c, a.Entry, c.sessionRef(), a.Iterator, a.Window, a.BatchSize))
		}
	case session.AckShared:
		if d != nil {
			d.Router().AckShared(c.sessionRef(), a.Filter, a.Grant)
		}
	case session.AckRead:
		if id, ok := c.mu.entries.get(a.Entry); ok {
			d.Router().Ack(id, a.BatchSeq)
		}
	case session.RemoveEntry:
		if id, ok := c.mu.entries.remove(a.Entry); ok {
			d.Router().Remove(id)
		}
	case session.Counted:
		c.s.metrics.counted(a)
	default:
		return false
	}
	return true
}

// setEntryLocked records that the machine's entry is the router's id.
func (c *conn) setEntryLocked(entry, id uint64) { c.mu.entries.set(entry, id) }

func (c *conn) sessionRef() *dsdv1.SessionRef {
	return &dsdv1.SessionRef{ClientId: c.mu.m.ClientID(), Guard: c.mu.m.Guard()}
}

func deliveryCall(d Delivery, f func(d Delivery) error) error {
	if d == nil {
		return errNoDelivery
	}
	return f(d)
}

// goIO runs one backend call of the connection on its own goroutine,
// bounded by BackendTimeout and timed by call kind; finish waits for it.
func (c *conn) goIO(call string, f func(ctx context.Context)) {
	if c.mu.ioClosed {
		return
	}
	c.io.Add(1)
	go func() {
		defer c.io.Done()
		defer c.recoverPanic(call)
		ctx, cancel := context.WithTimeout(c.s.ctx, c.s.opts.BackendTimeout)
		defer cancel()
		start := time.Now()
		f(ctx)
		c.s.metrics.dsdLatency.WithLabelValues(call).Observe(time.Since(start).Seconds())
	}()
}

// machineAnswer feeds a backend answer to the machine and carries out what
// it returns.
func (c *conn) machineAnswer(f func(m *session.Machine) []session.Action) {
	c.withMachineDo(func(m *session.Machine) { c.applyLocked(f(m)) })
}

// removeEntries ends the connection's entries (it is going away).
func (c *conn) removeEntries() {
	d := c.s.opts.Delivery
	c.mu.Lock()
	ids := make([]uint64, 0, len(c.mu.entries))
	for _, p := range c.mu.entries {
		ids = append(ids, p.id)
	}
	c.mu.entries = nil
	c.mu.Unlock()
	if d == nil {
		return
	}
	for _, id := range ids {
		d.Router().Remove(id)
	}
}

// finalCommit makes the session's delivery progress durable before the
// session ends.
func (c *conn) finalCommit() {
	d := c.s.opts.Delivery
	var cm *storagev1.SessionCommit
	c.withMachineDo(func(m *session.Machine) { cm = m.FinalCommit() })
	if d == nil || cm == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.s.ctx, c.s.opts.BackendTimeout)
	defer cancel()
	start := time.Now()
	if err := d.Commit(ctx, cm); err != nil && !errors.Is(err, session.ErrStaleGuard) {
		c.debug("final commit failed", "client_id", cm.ClientId, "err", err)
	}
	c.s.metrics.dsdLatency.WithLabelValues("commit").Observe(time.Since(start).Seconds())
}
