package storage

import (
	"context"
	"fmt"
	"time"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Generations returns the live generations of a shard, oldest first; the
// last one is current (UntilUs == 0). Nil for a shard that does not exist.
func (db *DB) Generations(shard int) []*storagev1.Generation {
	if shard < 0 || shard >= len(db.shards) {
		return nil
	}
	s := db.shards[shard]
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*storagev1.Generation, len(s.mu.st.gens))
	for i, g := range s.mu.st.gens {
		out[i] = cloneGeneration(g.meta)
	}
	return out
}

// AddGeneration ends the shard's current generation and starts a new one
// with the layout of Options.Layout. The new generation's since is a fresh
// timestamp of the shard, so it is greater than the readable clock; its
// trie starts with the wildcard paths of the previous one. It returns after
// the commit.
func (db *DB) AddGeneration(shard int) (*storagev1.Generation, error) {
	s, err := db.shard(shard)
	if err != nil {
		return nil, err
	}
	rep, err := s.do(context.Background(), &request{kind: reqAddGeneration})
	if err != nil {
		return nil, err
	}
	return rep.gen, rep.err
}

// DropGeneration deletes a non-current generation: its record, trie,
// counters and messages go in one batch (a range delete), and the range is
// compacted in the background. Iterators of the generation then fail with
// ErrGenerationDropped. Dropping the current generation fails with
// ErrCurrentGeneration.
func (db *DB) DropGeneration(shard int, id uint64) error {
	s, err := db.shard(shard)
	if err != nil {
		return err
	}
	rep, err := s.do(context.Background(), &request{kind: reqDropGeneration, dropID: id})
	if err != nil {
		return err
	}
	return rep.err
}

// MessageCounts returns the number of messages stored per live generation
// of a shard.
func (db *DB) MessageCounts(shard int) map[uint64]uint64 {
	if shard < 0 || shard >= len(db.shards) {
		return nil
	}
	s := db.shards[shard]
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[uint64]uint64, len(s.mu.st.gens))
	for _, g := range s.mu.st.gens {
		var n uint64
		for _, c := range g.counts {
			n += c
		}
		out[g.meta.Id] = n
	}
	return out
}

func (db *DB) shard(id int) (*shard, error) {
	if id < 0 || id >= len(db.shards) {
		return nil, fmt.Errorf("%w: shard %d does not exist (n_shards = %d)", ErrInvalidArgument, id, len(db.shards))
	}
	return db.shards[id], nil
}

// do hands a request to the shard writer and waits for its reply. A
// cancelled ctx returns early; the request may still be applied.
func (s *shard) do(ctx context.Context, r *request) (reply, error) {
	return s.doUntil(ctx, r, nil, nil)
}

// doUntil is do that also stops waiting once giveUp is closed, with the
// error why() returns (doWrite, diskspace.go); the request may still be
// applied. A nil giveUp never closes.
func (s *shard) doUntil(ctx context.Context, r *request, giveUp <-chan struct{}, why func() error) (reply, error) {
	if s.db.closing.Load() {
		return reply{}, ErrClosed
	}
	r.done = make(chan reply, 1)
	r.enqueued = time.Now()
	select {
	case s.reqCh <- r:
	case <-s.db.ctx.Done():
		return reply{}, ErrClosed
	case <-ctx.Done():
		return reply{}, ctx.Err()
	case <-giveUp:
		return reply{}, why()
	}
	select {
	case rep := <-r.done:
		return rep, nil
	case <-ctx.Done():
		return reply{}, fmt.Errorf("storage: %w (the request may still be applied)", ctx.Err())
	case <-giveUp:
		return reply{}, fmt.Errorf("%w (the request may still be applied)", why())
	}
}

// idleWork runs on the writer when the shard has nothing buffered and no
// commit in flight: retention first (rotation, then drops, one command per
// call), then the idle tick. It returns the in-flight batch, if any;
// waiters are answered once it is committed (on a replicated shard, once
// its entry is applied), or at once when there is nothing to do.
func (s *shard) idleWork(waiters []*request) *inflightBatch {
	answer := func() *inflightBatch {
		for _, r := range waiters {
			r.finish(reply{})
		}
		return nil
	}
	if s.db.failErr() != nil {
		return answer()
	}
	ref := s.repl.r.Load()
	if ref != nil && ref.r.CanServe() != nil {
		return answer() // a follower: the leader does the shard's idle work
	}
	now := s.db.opts.Now().UnixMicro()
	s.mu.RLock()
	cmd := retentionCommand(s.mu.st, now, s.db.opts.RetentionPeriod, s.db.opts.Layout)
	s.mu.RUnlock()
	if cmd == nil {
		cmd = s.tickCommand(now)
	}
	if cmd == nil {
		return answer()
	}
	if ref != nil {
		if !s.propose(ref.r, cmd, waiters) {
			s.db.log.Debug("idle work not proposed", "shard", s.id)
		}
		return nil
	}
	f := s.applyAndCommit(cmd, nil)
	if f == nil {
		return answer()
	}
	f.reqs = append(f.reqs, waiters...)
	f.replies = append(f.replies, make([]reply, len(waiters))...)
	switch c := cmd.(type) {
	case cmdTick:
		s.stats.ticks.Add(1)
	case cmdAddGeneration:
		s.db.log.Info("retention: new generation", "shard", s.id)
	case cmdDropGeneration:
		s.db.log.Info("retention: dropping generation", "shard", s.id, "generation", c.id)
	}
	return f
}

// retentionCommand is the retention policy, a pure function of the state
// and the clock: when the current generation was created more than period
// ago, add a generation; otherwise drop the oldest non-current generation
// whose until is older than now - period. Nil when there is nothing to do
// or period is 0.
func retentionCommand(st *shardState, nowUs int64, period time.Duration, layout LayoutConfig) command {
	if period <= 0 {
		return nil
	}
	p := period.Microseconds()
	cur := st.current()
	if nowUs-cur.meta.CreatedAtUs >= p {
		return cmdAddGeneration{nowUs: nowUs, layout: layout}
	}
	for _, g := range st.gens[:len(st.gens)-1] {
		if g.meta.UntilUs < nowUs-p {
			return cmdDropGeneration{nowUs: nowUs, id: g.meta.Id}
		}
	}
	return nil
}

// tickCommand decides the idle tick, needed only while the current
// generation is wildcard_optimized (v1): when the last epoch holding data is
// not yet complete for readers (epoch(lastDataTs) == epoch(R)) and the wall
// clock is in a later epoch, a tick moves the clock there. Ticks are
// suspended while the wall clock is more than MaxClockSkew behind the
// persisted clock.
func (s *shard) tickCommand(nowUs int64) command {
	s.mu.RLock()
	lastTs, lastData := s.mu.st.lastTs, s.mu.st.lastDataTs
	cur := s.mu.st.current().layout
	s.mu.RUnlock()
	if !cur.needsTicks() {
		// A v2 (time-first) current generation is readable up to the
		// readable clock, which every commit advances; older generations
		// are read to their end. Nothing waits for an epoch.
		return nil
	}
	e := cur.epochBits()
	behind := lastTs - nowUs
	suspended := behind > s.db.opts.MaxClockSkew.Microseconds()
	if suspended != s.tickSuspended {
		s.tickSuspended = suspended
		if suspended {
			s.db.log.Warn("idle ticks suspended: the wall clock is behind the shard clock", "shard", s.id, "behind", time.Duration(behind)*time.Microsecond)
		} else {
			s.db.log.Info("idle ticks resumed: the wall clock caught up", "shard", s.id)
		}
	}
	if suspended || epochOf(lastData, e) < epochOf(lastTs, e) || epochOf(nowUs, e) <= epochOf(lastTs, e) {
		return nil
	}
	return cmdTick{nowUs: nowUs}
}

func epochOf(ts int64, bits int) int64 {
	if bits >= 63 {
		return 0
	}
	return ts >> uint(bits)
}
