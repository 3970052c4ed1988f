package storage

import (
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// maxUnitsPerRound bounds the applied commands merged into one commit
// round, so that one round's Pebble batch stays a few MiB at most.
const maxUnitsPerRound = 1024

// committer is the engine's one group committer. Shard writers apply their
// commands (in each shard's order) and hand the resulting writes to it; each
// round it takes everything handed in since the last one, from every
// shard, writes it as one Pebble batch and leaves the fsync to the syncer,
// which waits for each round's fsync in order and completes the round's
// commands on their shards. Up to Options.MaxInflightCommits rounds are in
// flight: while they are, new commands gather for the next round. So every
// Store, session command, tick and will firing of the whole engine shares
// one fsync per round, and no kind of command has an fsync of its own.
//
// A shard's commands reach the committer over one channel and leave the
// syncer in order, so a shard sees its commands complete in the order it
// applied them.
type committer struct {
	db *DB
	// in carries applied commands from the shard writers. Its buffer holds
	// every shard's MaxInflightCommits, so a writer never blocks on it.
	in chan *inflightBatch
	// slots holds one token per round in flight.
	slots chan struct{}
	// rounds carries committed rounds, in order, to the syncer.
	rounds chan *commitRound
	stats  commitStats
}

// commitRound is one Pebble batch of the committer: the writes of units.
type commitRound struct {
	batch   *pebble.Batch
	waits   bool // SyncWait is needed (false with UnsafeNoSync, a round of logged units only, or on error)
	units   []*inflightBatch
	err     error
	started time.Time
	nmsgs   int
	nbytes  int
}

// commitStats are the committer's counters (EngineStats).
type commitStats struct {
	rounds    atomic.Int64
	units     atomic.Int64
	messages  atomic.Int64
	bytes     atomic.Int64
	roundTime latencyHistogram
}

// CommitStats are the committer's counters: rounds committed, the applied
// commands, messages and message bytes they carried, and how long a round
// took from its Pebble batch being applied to its fsync returning.
type CommitStats struct {
	Rounds, Commands, Messages, Bytes int64
	RoundTime                         Histogram
}

// CommitStats returns the group committer's counters.
func (db *DB) CommitStats() CommitStats {
	c := &db.committer.stats
	return CommitStats{Rounds: c.rounds.Load(), Commands: c.units.Load(), Messages: c.messages.Load(),
		Bytes: c.bytes.Load(), RoundTime: c.roundTime.snapshot()}
}

func newCommitter(db *DB) *committer {
	n := db.opts.MaxInflightCommits
	return &committer{
		db:     db,
		in:     make(chan *inflightBatch, len(db.shards)*n+1),
		slots:  make(chan struct{}, n),
		rounds: make(chan *commitRound, n),
	}
}

// run is the committer's goroutine: it ends when in is closed (every shard
// writer has ended) and drained.
func (c *committer) run() {
	defer c.db.wg.Done()
	defer close(c.rounds)
	for u := range c.in {
		c.slots <- struct{}{} // wait for a round to finish, gathering more
		units := append(make([]*inflightBatch, 0, 16), u)
	gather:
		for len(units) < maxUnitsPerRound {
			select {
			case v, ok := <-c.in:
				if !ok {
					break gather
				}
				units = append(units, v)
			default:
				break gather
			}
		}
		c.rounds <- c.commit(units)
	}
}

// commit writes units as one Pebble batch, without waiting for the fsync.
func (c *committer) commit(units []*inflightBatch) *commitRound {
	db := c.db
	r := &commitRound{units: units, started: time.Now()}
	r.batch = db.pdb.NewBatch()
	for _, u := range units {
		writeBatch(r.batch, u.writes)
		u.writes = nil
		r.nmsgs += u.nmsgs
		r.nbytes += u.nbytes
	}
	if err := db.failErr(); err != nil {
		// A round after a failed one is never written.
		r.err = err
		return r
	}
	var err error
	if db.opts.UnsafeNoSync || allLogged(units) {
		// Logged units are applied entries of replicated shards: a
		// restart re-applies them from the synced raft log (their index
		// is written with them), so their writes need no fsync of their
		// own. A later synced round makes them durable too (WAL order).
		err = db.pdb.Apply(r.batch, pebble.NoSync)
	} else {
		err = db.pdb.ApplyNoSyncWait(r.batch, pebble.Sync)
		r.waits = err == nil
	}
	if err != nil {
		r.err = wrapPebble("commit", err)
		db.failStop(r.err)
		return r
	}
	for _, u := range units {
		u.shard.assigned.Store(u.lastTs)
	}
	return r
}

// allLogged reports whether every unit is an applied entry of a
// replicated shard (inflightBatch.logged).
func allLogged(units []*inflightBatch) bool {
	for _, u := range units {
		if !u.logged {
			return false
		}
	}
	return true
}

// runSyncer waits for each round's fsync, in order, then completes its
// commands on their shards.
func (c *committer) runSyncer() {
	defer c.db.wg.Done()
	for r := range c.rounds {
		err := r.err
		if r.waits {
			if serr := r.batch.SyncWait(); serr != nil && err == nil {
				err = wrapPebble("commit sync", serr)
				c.db.failStop(err)
			}
		}
		_ = r.batch.Close()
		if err == nil {
			// A round applied after an earlier one failed is not trusted
			// even if its own sync succeeded.
			err = c.db.failErr()
		}
		if err == nil {
			c.stats.rounds.Add(1)
			c.stats.units.Add(int64(len(r.units)))
			c.stats.messages.Add(int64(r.nmsgs))
			c.stats.bytes.Add(int64(r.nbytes))
			c.stats.roundTime.observe(time.Since(r.started))
		}
		for _, u := range r.units {
			u.shard.finish(u, err)
		}
		<-c.slots
	}
}
