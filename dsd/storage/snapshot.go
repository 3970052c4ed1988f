package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Shard snapshots (docs/replication.md). A replica of a replicated shard
// that needs entries its group's log dropped is sent the shard's whole
// state instead: every key of the shard's keyspace (S | ...: clock,
// generations and their messages, producers, sessions, wills, shared
// groups, the applied index) read from one Pebble snapshot, so the state is
// exactly the one after the applied index it carries. The receiver replaces
// its keyspace with it:
//
//  1. one synced batch records the install (S|0D) and deletes every other
//     key of the shard;
//  2. the pairs are written in batches of a few MiB, the last one synced;
//  3. the caller's durable callback records the raft snapshot (raftlog);
//  4. S|0D is deleted (synced) and the shard's state reloaded.
//
// A crash before 4 leaves S|0D: the next Open resets the shard to a new
// shard's records and InstallInterrupted reports it, so its group starts
// from an empty log and fetches a snapshot again; a shard half installed is
// never taken for a complete one.

// ErrSnapshot marks a shard snapshot that cannot be read or installed: a
// malformed chunk, a key outside the shard, a state without an applied
// index.
var ErrSnapshot = errors.New("storage: bad shard snapshot")

// installBatchBytes is the size at which an install commits a batch of
// pairs (unsynced: the last batch syncs them all, WAL order).
const installBatchBytes = 4 << 20

// ShardSnapshot is a consistent view of one shard's keyspace.
type ShardSnapshot struct {
	snap    *pebble.Snapshot
	it      *pebble.Iterator
	applied uint64
	valid   bool
}

// shardBounds is the range of every key of shard.
func shardBounds(shard int) (lo, hi []byte) {
	lo = []byte{byte(shard >> 8), byte(shard)}
	return lo, prefixEnd(lo)
}

// OpenShardSnapshot opens a view of shard's state as of now: Applied is the
// last raft entry it covers. Close it.
func (db *DB) OpenShardSnapshot(shard int) (*ShardSnapshot, error) {
	if _, err := db.shard(shard); err != nil {
		return nil, err
	}
	if err := db.failErr(); err != nil {
		return nil, err
	}
	snap := db.pdb.NewSnapshot()
	s := &ShardSnapshot{snap: snap}
	fail := func(err error) (*ShardSnapshot, error) {
		_ = snap.Close()
		return nil, err
	}
	// The view never changes: without the marker now, it never holds one.
	if _, closer, err := snap.Get(shardInstallingKey(shard)); err == nil {
		closer.Close()
		return fail(fmt.Errorf("%w: shard %d is being installed here", ErrSnapshot, shard))
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fail(wrapPebble("read the install marker", err))
	}
	var err error
	if s.applied, err = readApplied(snap, shard); err != nil {
		return fail(err)
	}
	lo, hi := shardBounds(shard)
	s.it, err = snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fail(wrapPebble("snapshot iterator", err))
	}
	s.valid = s.it.First()
	return s, nil
}

// Applied is the index of the last raft entry the view covers (0: none).
func (s *ShardSnapshot) Applied() uint64 { return s.applied }

// NextChunk appends key/value pairs to dst (AppendSnapshotPair) until it
// holds at least maxBytes or the view is exhausted; last reports the latter.
func (s *ShardSnapshot) NextChunk(dst []byte, maxBytes int) (chunk []byte, last bool, err error) {
	for s.valid && len(dst) < maxBytes {
		v, err := s.it.ValueAndErr()
		if err != nil {
			return dst, false, wrapPebble("snapshot read", err)
		}
		dst = AppendSnapshotPair(dst, s.it.Key(), v)
		s.valid = s.it.Next()
	}
	if !s.valid {
		if err := s.it.Error(); err != nil {
			return dst, false, wrapPebble("snapshot read", err)
		}
	}
	return dst, !s.valid, nil
}

// Close releases the view.
func (s *ShardSnapshot) Close() error {
	err := s.it.Close()
	if serr := s.snap.Close(); err == nil {
		err = serr
	}
	return err
}

// AppendSnapshotPair appends one pair of a snapshot chunk: uvarint key
// length, key, uvarint value length, value.
func AppendSnapshotPair(dst, k, v []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(k)))
	dst = append(dst, k...)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

// DecodeSnapshotChunk calls fn for every pair of chunk, in order; k and v
// alias chunk. A malformed chunk is ErrSnapshot (fn was called for the pairs
// before the fault).
func DecodeSnapshotChunk(chunk []byte, fn func(k, v []byte) error) error {
	for off := 0; off < len(chunk); {
		var parts [2][]byte
		for i := range parts {
			n, w := binary.Uvarint(chunk[off:])
			if w <= 0 {
				return fmt.Errorf("%w: bad length at offset %d", ErrSnapshot, off)
			}
			off += w
			if n > uint64(len(chunk)-off) {
				return fmt.Errorf("%w: a length of %d at offset %d overruns the chunk of %d bytes", ErrSnapshot, n, off, len(chunk))
			}
			parts[i] = chunk[off : off+int(n)]
			off += int(n)
		}
		if err := fn(parts[0], parts[1]); err != nil {
			return err
		}
	}
	return nil
}

func decodeIndex(v []byte) (uint64, error) {
	if len(v) != 9 || v[0] != valueVersion1 {
		return 0, fmt.Errorf("%d bytes, version %x", len(v), v[:min(len(v), 1)])
	}
	return binary.BigEndian.Uint64(v[1:]), nil
}

// InstallInterrupted reports whether an install of a snapshot of shard
// was interrupted (a crash): Open then reset the shard to a new shard's
// records, and its raft group must start from an empty log and fetch a
// snapshot again (the shard's state and its log no longer match).
func (db *DB) InstallInterrupted(shard int) (bool, error) {
	if _, err := db.shard(shard); err != nil {
		return false, err
	}
	return db.interrupted(shard)
}

// resetInterruptedInstalls runs at Open, before the shards load: a shard
// whose install marker is set is reset to a new shard's records (the
// marker stays, for InstallInterrupted).
func (db *DB) resetInterruptedInstalls() error {
	for i := range db.opts.NShards {
		ok, err := db.interrupted(i)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		b := db.pdb.NewBatch()
		clearShard(b, i)
		writeInitialShard(b, i, db.opts.Layout, db.opts.Now().UnixMicro())
		err = b.Commit(pebble.Sync)
		_ = b.Close()
		if err != nil {
			return wrapPebble("reset a shard whose install was interrupted", err)
		}
		db.log.Warn("a shard snapshot's install was interrupted: the shard is reset, and its raft group fetches a snapshot again", "shard", i)
	}
	return nil
}

func (db *DB) interrupted(shard int) (bool, error) {
	_, closer, err := db.pdb.Get(shardInstallingKey(shard))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, wrapPebble("read the install marker", err)
	}
	closer.Close()
	return true, nil
}

// clearShard deletes every key of shard but its install marker.
func clearShard(b *pebble.Batch, shard int) {
	lo, hi := shardBounds(shard)
	marker := shardInstallingKey(shard)
	_ = b.DeleteRange(lo, marker, nil)
	_ = b.DeleteRange(append(marker, 0), hi, nil)
}

// InstallShardSnapshot replaces shard's state with a snapshot's: next
// returns its chunks in order, then io.EOF; durable is called once the new
// state is durable, with the applied index it covers, before the install is
// marked complete (the caller records the raft snapshot there). It runs on
// the shard's writer, once its commits in flight are done; nothing else of
// the shard is applied meanwhile. On an error the shard's keyspace may be
// half written and stays marked: call it again (or a restart resets the
// shard, InstallInterrupted).
func (db *DB) InstallShardSnapshot(shard int, next func() ([]byte, error), durable func(applied uint64) error) (uint64, error) {
	s, err := db.shard(shard)
	if err != nil {
		return 0, err
	}
	var applied uint64
	err = s.onWriter(func() error {
		var err error
		applied, err = s.install(next, durable)
		return err
	})
	return applied, err
}

// onWriter runs fn on the shard's writer once its commits in flight are
// done; nothing else of the shard runs meanwhile.
func (s *shard) onWriter(fn func() error) error {
	r := &request{kind: reqInstall, enqueued: time.Now(), done: make(chan reply, 1), install: fn}
	select {
	case s.reqCh <- r:
	case <-s.db.ctx.Done():
		return ErrClosed
	}
	return (<-r.done).err
}

// ResetShard replaces shard's state with a new shard's records: this site
// no longer holds a replica of it (its raft group removed it).
func (db *DB) ResetShard(shard int) error {
	s, err := db.shard(shard)
	if err != nil {
		return err
	}
	return s.onWriter(func() error {
		if err := db.failErr(); err != nil {
			return err
		}
		b := db.pdb.NewBatch()
		defer func() { _ = b.Close() }()
		clearShard(b, s.id)
		_ = b.Delete(shardInstallingKey(s.id), nil)
		writeInitialShard(b, s.id, db.opts.Layout, db.opts.Now().UnixMicro())
		if err := b.Commit(pebble.Sync); err != nil {
			return wrapPebble("reset a shard", err)
		}
		return s.reload()
	})
}

// MarkReplicated records index as the applied raft index of shard, a
// local shard whose state becomes the first snapshot of its new raft group
// (more replicas are added): from then on its commands come from the group
// (SetReplicator first). Its commits in flight are done before.
func (db *DB) MarkReplicated(shard int, index uint64) error {
	s, err := db.shard(shard)
	if err != nil {
		return err
	}
	return s.onWriter(func() error {
		if err := db.failErr(); err != nil {
			return err
		}
		w := appliedWrite(s.id, index)
		return wrapPebble("mark a shard replicated", db.pdb.Set(w.key, w.value, pebble.Sync))
	})
}

// reload rebuilds the shard's state from Pebble (on the writer).
func (s *shard) reload() error {
	st, err := loadShardState(s.db, s.id)
	if err != nil {
		return err
	}
	s.swapState(st)
	return nil
}

func (s *shard) swapState(st *shardState) {
	s.mu.Lock()
	s.mu.st = st
	s.mu.Unlock()
	s.assigned.Store(st.lastTs)
	s.readable.Store(st.lastTs)
	s.db.tail.dropShard(s.id)
	s.db.notify.committed(s.id, true, true)
}

// install is InstallShardSnapshot on the writer.
func (s *shard) install(next func() ([]byte, error), durable func(applied uint64) error) (uint64, error) {
	db := s.db
	if err := db.failErr(); err != nil {
		return 0, err
	}
	lo, hi := shardBounds(s.id)
	marker := shardInstallingKey(s.id)
	b := db.pdb.NewBatch()
	defer func() { _ = b.Close() }()
	_ = b.Set(marker, append([]byte{valueVersion1}, make([]byte, 8)...), nil)
	clearShard(b, s.id)
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, wrapPebble("begin a snapshot's install", err)
	}
	b.Reset()
	var applied uint64
	hasApplied := false
	put := func(k, v []byte) error {
		if string(k) < string(lo) || string(k) >= string(hi) || string(k) == string(marker) {
			return fmt.Errorf("%w: key %x is not a key of shard %d", ErrSnapshot, k, s.id)
		}
		if string(k) == string(shardAppliedKey(s.id)) {
			n, err := decodeIndex(v)
			if err != nil {
				return fmt.Errorf("%w: applied index: %w", ErrSnapshot, err)
			}
			applied, hasApplied = n, true
		}
		return b.Set(k, v, nil)
	}
	for {
		chunk, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		if err := DecodeSnapshotChunk(chunk, put); err != nil {
			return 0, err
		}
		if b.Len() >= installBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return 0, wrapPebble("install a snapshot", err)
			}
			b.Reset()
		}
	}
	if !hasApplied {
		return 0, fmt.Errorf("%w: shard %d: the state has no applied index", ErrSnapshot, s.id)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, wrapPebble("install a snapshot", err)
	}
	st, err := loadShardState(db, s.id)
	if err != nil {
		return 0, err
	}
	if err := durable(applied); err != nil {
		return 0, err
	}
	if err := db.pdb.Delete(marker, pebble.Sync); err != nil {
		return 0, wrapPebble("complete a snapshot's install", err)
	}
	s.swapState(st)
	return applied, nil
}
