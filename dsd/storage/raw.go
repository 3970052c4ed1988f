package storage

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// Raw writes exactly the keys and values a DB writes for a Store, straight
// into its own Pebble instance, with none of the DB's machinery: no shard
// writers, no buffers, no syncers, no goroutines. It exists for
// benchmarks (tools/dsbench): the same workload through dsd and through Raw
// gives dsd's overhead over Pebble as one ratio.
//
// One Write is one Store: it runs the shard writer's pure apply function
// (timestamps, LTS learning, data keys and values, trie edges, stream
// counts, producer state, shard clock) on its own shard state and commits
// the writes as one Pebble batch with pebble.Sync (NoSync with
// Options.UnsafeNoSync). Concurrent Writes are concurrent committers, whose
// fsyncs Pebble merges as it merges those of a DB's shards. What Raw leaves
// out is what a DB adds: grouping several Stores of a shard into one batch,
// the readable clock, idle ticks, retention and reads.
//
// A Raw's data dir is a valid data dir: a DB can open it after Raw.Close
// (and Raw can open one a DB wrote), because the site record, the initial
// shards and the loading of shard state are the DB's own code. A Raw shares
// no state with any DB; like a DB it locks its data dir.
type Raw struct {
	// db is a DB that is never started: it holds the options, the Pebble
	// instance, the dir lock and the fail-stop error, so that Raw reuses
	// the DB's site initialisation, shard loading and Store validation.
	db     *DB
	shards []*rawShard
}

// rawShard is one shard's state. writer plays the role of the shard's
// writer goroutine: it is held while apply runs and while the batch is
// handed to Pebble (ApplyNoSyncWait, which queues the batch to the WAL but
// does not wait for the fsync), so that the batches of a shard reach Pebble
// in apply order and its persisted clock never goes back. The fsync is
// awaited after writer is released.
type rawShard struct {
	writer sync.Mutex
	st     *shardState // guarded by writer
}

// OpenRaw opens (or creates) a data dir for Raw writes. It uses DataDir, FS,
// NShards, Layout, Now, Logger, PebbleCacheBytes, MaxMessageBytes and
// UnsafeNoSync of opts, with the defaults of Open; the other fields are
// ignored.
func OpenRaw(opts Options) (*Raw, error) {
	opts = opts.Clone()
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := opts.FS.MkdirAll(opts.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: raw: create data dir %s: %w", opts.DataDir, err)
	}
	lock, err := pebble.LockDirectory(opts.DataDir, opts.FS)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, opts.DataDir, err)
	}
	log := opts.Logger.With("component", "storage-raw")
	db := &DB{opts: opts, lock: lock, log: log}
	r := &Raw{db: db}
	if err := r.open(); err != nil {
		if db.pdb != nil {
			_ = db.pdb.Close()
		}
		_ = lock.Close()
		return nil, err
	}
	return r, nil
}

func (r *Raw) open() error {
	db := r.db
	if err := db.openPebble(); err != nil {
		return err
	}
	r.shards = make([]*rawShard, db.opts.NShards)
	for i := range r.shards {
		s, err := loadShard(db, i)
		if err != nil {
			return err
		}
		r.shards[i] = &rawShard{st: s.mu.st}
	}
	return nil
}

// Write stores msgs published by clientID as DB.Store would, with the same
// validation, and returns after the batch's fsync. With a producer it makes
// the same idempotence decisions as DB.Store. After a commit error every
// later Write fails with ErrFailStop.
func (r *Raw) Write(clientID string, msgs []*storagev1.Message, p *Producer) (StoreResult, error) {
	shardID := ShardOf(clientID, len(r.shards))
	res := StoreResult{Shard: shardID}
	in, err := ingestMessagesOf(msgs)
	if err != nil {
		return res, err
	}
	if _, err := r.db.validateStore(clientID, in, p); err != nil {
		return res, err
	}
	if err := r.db.failErr(); err != nil {
		return res, err
	}
	s := r.shards[shardID]
	b := r.db.pdb.NewBatch()
	defer b.Close()
	out, waits, err := r.applyAndCommit(s, b, &storeReq{clientID: clientID, msgs: in, producer: p})
	if err != nil {
		return res, err
	}
	if waits {
		if err := b.SyncWait(); err != nil {
			err = wrapPebble("raw: commit sync", err)
			r.db.failStop(err)
			return res, err
		}
	}
	if out.err != nil {
		return res, out.err
	}
	res.Duplicate = out.duplicate
	res.TimestampsUs = out.timestamps
	return res, nil
}

// applyAndCommit applies one Store to the shard state and hands its writes
// to Pebble, holding the shard's writer lock. waits reports whether the
// caller must SyncWait the batch; out.err is the Store's refusal (its
// writes, if any, are committed all the same).
func (r *Raw) applyAndCommit(s *rawShard, b *pebble.Batch, sr *storeReq) (out storeOutcome, waits bool, err error) {
	s.writer.Lock()
	defer s.writer.Unlock()
	if err := r.db.failErr(); err != nil {
		return out, false, err
	}
	res := apply(s.st, cmdBatch{nowUs: r.db.opts.Now().UnixMicro(), stores: []*storeReq{sr}})
	r.db.tail.applied(s.st.shard, &res)
	// Like the shard writer, commit whatever apply wrote even when it
	// refused the Store: trie edges learned before an lts error are in the
	// in-memory trie and must reach the disk too.
	out = res.outcomes[0]
	writeBatch(b, res.writes)
	if r.db.opts.UnsafeNoSync {
		err = r.db.pdb.Apply(b, pebble.NoSync)
	} else {
		err = r.db.pdb.ApplyNoSyncWait(b, pebble.Sync)
		waits = err == nil
	}
	if err != nil {
		// apply changed the state in place: it is no longer trusted.
		err = wrapPebble("raw: commit", err)
		r.db.failStop(err)
		return out, false, err
	}
	return out, waits, nil
}

// NShards is the number of shards of the data dir.
func (r *Raw) NShards() int { return len(r.shards) }

// Close closes Pebble and releases the data dir lock. Writes must have
// returned.
func (r *Raw) Close() error {
	return errors.Join(wrapPebble("raw: close", r.db.pdb.Close()), r.db.lock.Close())
}
