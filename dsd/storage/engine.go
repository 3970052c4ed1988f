package storage

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// DB is the storage engine of one site: one Pebble instance holding every
// shard. It owns one writer goroutine and one syncer goroutine per shard and
// one compactor goroutine; Close stops them all.
type DB struct {
	opts   Options
	pdb    *pebble.DB
	lock   *pebble.Lock
	siteID string
	// origin is this open's random id in the log entries it proposes
	// (replication.go).
	origin uint64
	shards []*shard
	log    *slog.Logger
	// notify wakes readers on commits (notify.go).
	notify *notifier
	// sessionEvents are the GuardRevoked subscribers (session.go).
	sessionEvents sessionEvents
	// committer is the group committer of every shard (committer.go).
	committer *committer
	// tail is the tail cache of v2 streams (tailcache.go); nil when off.
	tail *tailCache

	// closing is set at the start of Close; Stores arriving later fail.
	closing atomic.Bool
	// sharedLive is SetSharedLive's function (shared.go).
	sharedLive atomic.Pointer[func(string) bool]
	// sharedWake is SetSharedWake's function.
	sharedWake atomic.Pointer[func(string)]
	// sharedRemote is SetSharedRemote's (shared_remote.go).
	sharedRemote atomic.Pointer[sharedRemoteRef]
	sharedStats  sharedCounters
	// failed is the first commit error; set once, never cleared.
	failed atomic.Pointer[error]
	// space is the free-space watermark (diskspace.go).
	space *diskSpace
	// pebbleBroken: Pebble met a full disk where it cannot go on
	// (pebble_logger.go); Close leaves it unclosed.
	pebbleBroken atomic.Bool
	// fatalPark is what a disk-full Fatalf of Pebble waits for: nil (for
	// ever) outside tests.
	fatalPark chan struct{}

	// ctx is cancelled by Close and stops every owned goroutine.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	compactCh chan keyRange
	closeOnce sync.Once
	closeErr  error
}

type keyRange struct{ start, end []byte }

// Open opens (or creates) the data dir at opts.DataDir. A second Open of the
// same dir, in this process or another, fails with ErrLocked until the first
// DB is closed.
func Open(opts Options) (*DB, error) {
	opts = opts.Clone()
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "storage")
	if err := opts.FS.MkdirAll(opts.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: create data dir %s: %w", opts.DataDir, err)
	}
	lock, err := pebble.LockDirectory(opts.DataDir, opts.FS)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, opts.DataDir, err)
	}
	db := &DB{opts: opts, lock: lock, log: log, compactCh: make(chan keyRange, 64), notify: newNotifier(opts.NShards), tail: newTailCache(opts.TailCacheBytes)}
	if err := db.open(); err != nil {
		if db.pdb != nil {
			_ = db.pdb.Close()
		}
		_ = lock.Close()
		return nil, err
	}
	if opts.UnsafeNoSync {
		log.Warn("UnsafeNoSync is on: commits are not fsynced and acked messages can be lost on a crash")
	}
	log.Info("storage opened", "data_dir", opts.DataDir, "site_id", db.siteID, "n_shards", opts.NShards)
	return db, nil
}

// openPebble opens the engine under the data dir lock and loads or creates
// the site record. DB.open and OpenRaw share it, so both see the same engine
// settings.
func (db *DB) openPebble() error {
	cache := pebble.NewCache(db.opts.PebbleCacheBytes)
	defer cache.Unref()
	if db.space == nil {
		db.space = newDiskSpace(db.opts, db.log)
	}
	logger := pebbleLogger{l: db.log.With("component", "pebble"), db: db}
	popts := &pebble.Options{
		FS:                 db.space.wrapFS(db.opts.FS),
		FormatMajorVersion: pebble.FormatNewest,
		Lock:               db.lock,
		Logger:             logger,
		EventListener:      pebbleEvents(logger),
		Cache:              cache,
	}
	pdb, err := pebble.Open(db.opts.DataDir, popts)
	if err != nil {
		return wrapPebble("open "+db.opts.DataDir, err)
	}
	db.pdb = pdb
	return db.loadOrInitSite()
}

// writeBatch puts the writes of one applied command into a Pebble batch.
func writeBatch(b *pebble.Batch, writes []write) {
	for _, w := range writes {
		switch {
		case w.end != nil:
			_ = b.DeleteRange(w.key, w.end, nil)
		case w.value == nil:
			_ = b.Delete(w.key, nil)
		default:
			_ = b.Set(w.key, w.value, nil)
		}
	}
}

func (db *DB) open() error {
	if err := db.openPebble(); err != nil {
		return err
	}
	if err := db.resetInterruptedInstalls(); err != nil {
		return err
	}
	if err := db.migrateRetained(); err != nil {
		return err
	}
	db.shards = make([]*shard, db.opts.NShards)
	for i := range db.shards {
		s, err := loadShard(db, i)
		if err != nil {
			return err
		}
		db.shards[i] = s
	}
	db.ctx, db.cancel = context.WithCancel(context.Background())
	db.startDiskSpace()
	db.committer = newCommitter(db)
	db.wg.Add(3)
	go db.committer.run()
	go db.committer.runSyncer()
	var writers sync.WaitGroup
	for _, s := range db.shards {
		s.start(&writers)
	}
	// The committer ends once every writer has ended and it has drained.
	go func() {
		defer db.wg.Done()
		writers.Wait()
		close(db.committer.in)
	}()
	db.wg.Add(1)
	go db.runCompactor()
	if acks, downs := db.reconcileShared(); len(acks)+len(downs) > 0 {
		db.wg.Add(1)
		go db.sharedAfterCommit(acks, downs)
	}
	db.forgetGoneSharedLater()
	return nil
}

// loadOrInitSite reads the site record, or writes it at first start.
func (db *DB) loadOrInitSite() error {
	var meta storagev1.SiteMeta
	found, err := db.getValue(siteMetaKey(), &meta)
	if err != nil {
		return err
	}
	if !found {
		id := make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return fmt.Errorf("storage: site id: %w", err)
		}
		meta = storagev1.SiteMeta{
			SiteId:        hex.EncodeToString(id),
			NShards:       uint32(db.opts.NShards),
			FormatVersion: DataDirFormatVersion,
			CreatedAtUs:   db.opts.Now().UnixMicro(),
		}
		b := db.pdb.NewBatch()
		defer b.Close()
		_ = b.Set(siteMetaKey(), encodeValue(&meta), nil)
		for i := 0; i < db.opts.NShards; i++ {
			writeInitialShard(b, i, db.opts.Layout, meta.CreatedAtUs)
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return wrapPebble("write site record", err)
		}
		db.log.Info("new data dir", "site_id", meta.SiteId, "n_shards", meta.NShards)
	}
	if meta.FormatVersion != DataDirFormatVersion {
		return fmt.Errorf("%w: data dir %s has format version %d, this build reads %d",
			ErrFormatVersion, db.opts.DataDir, meta.FormatVersion, DataDirFormatVersion)
	}
	if int(meta.NShards) != db.opts.NShards {
		return fmt.Errorf("%w: data dir %s was created with n_shards = %d, options say %d",
			ErrNShardsMismatch, db.opts.DataDir, meta.NShards, db.opts.NShards)
	}
	if len(meta.SiteId) != 16 {
		return fmt.Errorf("%w: site record: bad site id %q", ErrCorruption, meta.SiteId)
	}
	db.siteID = meta.SiteId
	var origin [8]byte
	if _, err := rand.Read(origin[:]); err != nil {
		return fmt.Errorf("storage: proposal origin: %w", err)
	}
	db.origin = binary.BigEndian.Uint64(origin[:])
	return nil
}

// getValue reads one framed value. found is false when the key is absent.
func (db *DB) getValue(key []byte, m proto.Message) (found bool, err error) {
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, wrapPebble("get "+prettyKey(key), err)
	}
	defer closer.Close()
	return true, decodeValue(key, v, m)
}

// Close stops every shard (pending Stores fail with ErrClosed; commits in
// flight finish), then closes Pebble and releases the data dir lock. It is
// safe to call more than once. When a commit is stuck in Pebble past
// Options.CloseTimeout (a full disk), or Pebble met a full disk where it
// cannot go on, Close leaves Pebble unclosed and the lock held and returns
// ErrLeftUnclosed: the process should exit (closeBounded, diskspace.go).
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closing.Store(true)
		db.cancel()
		for _, s := range db.shards {
			s.failProposals(ErrClosed)
		}
		if err := db.closeBounded(); err != nil {
			db.closeErr = err
			return
		}
		db.notify.close()
		err := db.pdb.Close()
		db.closeErr = errors.Join(wrapPebble("close", err), db.lock.Close())
		db.log.Info("storage closed", "data_dir", db.opts.DataDir)
	})
	return db.closeErr
}

// SiteID is the site's persistent random id: 16 hex characters.
func (db *DB) SiteID() string { return db.siteID }

// Engine is the site's Pebble instance, for the raft state keyspace
// (FF FF 30, dsd/raftlog) only: raft groups share the engine, and so its
// fsyncs, with the shards. Nothing else may write through it.
func (db *DB) Engine() *pebble.DB { return db.pdb }

// NShards is the number of shards, fixed at first start.
func (db *DB) NShards() int { return len(db.shards) }

// Options returns a copy of the effective options.
func (db *DB) Options() Options { return db.opts.Clone() }

// ShardOf is the shard of a publisher: FNV-1a (64-bit) of the client id,
// modulo n_shards. It is part of the data dir's meaning and never changes.
func (db *DB) ShardOf(clientID string) int { return ShardOf(clientID, len(db.shards)) }

// ShardOf is DB.ShardOf for a given shard count.
func ShardOf(clientID string, nShards int) int {
	h := fnv.New64a()
	h.Write([]byte(clientID))
	return int(h.Sum64() % uint64(nShards))
}

// Watermarks returns, per shard, the shard's last assigned timestamp + 1: a
// stream read from it sees every message stored after this call.
func (db *DB) Watermarks() []int64 {
	out := make([]int64, len(db.shards))
	for i, s := range db.shards {
		out[i] = s.assigned.Load() + 1
	}
	return out
}

// ReadableClock returns the shard's readable clock R: every message with a
// timestamp <= R is committed. -1 for a shard that does not exist.
func (db *DB) ReadableClock(shard int) int64 {
	if shard < 0 || shard >= len(db.shards) {
		return -1
	}
	return db.shards[shard].readable.Load()
}

// failStop records the first write error; every later write fails.
func (db *DB) failStop(err error) {
	if db.failed.CompareAndSwap(nil, &err) {
		db.log.Error("write failed: the engine refuses writes until it is reopened", "err", err)
	}
}

func (db *DB) failErr() error {
	if p := db.failed.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrFailStop, *p)
	}
	return nil
}

// runCompactor compacts the ranges of dropped generations, one at a time, so
// that no shard writer waits for a compaction.
func (db *DB) runCompactor() {
	defer db.wg.Done()
	for {
		select {
		case <-db.ctx.Done():
			return
		case r := <-db.compactCh:
			if err := db.pdb.Compact(db.ctx, r.start, r.end, false); err != nil && db.ctx.Err() == nil {
				db.log.Warn("compact dropped generation", "range", prettyKey(r.start), "err", err)
			}
		}
	}
}

func (db *DB) scheduleCompaction(r keyRange) {
	select {
	case db.compactCh <- r:
	default:
		// The queue is full: the range delete is committed, and Pebble's own
		// compactions will reclaim the space later.
		db.log.Warn("compaction queue full; leaving a dropped range to background compactions", "range", prettyKey(r.start))
	}
}
