package storage

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/retainedorder"
)

// tagLegacyRetained is the site-wide retained keyspace of earlier versions
// (after FF FF), which Open empties into the shards. On disk: never reused.
const tagLegacyRetained byte = 0x20

// migrateChunk bounds the records one migration batch moves.
const migrateChunk = 4096

// migrateRetained moves the records of the site-wide retained keyspace of
// earlier versions into the shard keyspaces: a record into the shard its
// order key names (an operator's tombstone, shard 65535, into the topic's
// shard), where it replaces only an older record. Each batch moves records
// and deletes them from the old keyspace atomically, synced, so a crash in
// the middle leaves the rest for the next Open.
func (db *DB) migrateRetained() error {
	prefix := shardPrefix(siteShard, tagLegacyRetained)
	moved := 0
	for {
		n, err := db.migrateRetainedChunk(prefix)
		if err != nil {
			return fmt.Errorf("storage: moving retained messages into the shards: %w", err)
		}
		moved += n
		if n < migrateChunk {
			break
		}
	}
	if moved > 0 {
		db.log.Info("moved the retained messages of an earlier version into the shards", "count", moved)
	}
	return nil
}

func (db *DB) migrateRetainedChunk(prefix []byte) (int, error) {
	iter, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, wrapPebble("migrate retained", err)
	}
	defer iter.Close()
	b := db.pdb.NewBatch()
	defer b.Close()
	n := 0
	for valid := iter.First(); valid && n < migrateChunk; valid = iter.Next() {
		n++
		v, err := iter.ValueAndErr()
		if err != nil {
			return 0, wrapPebble("migrate retained", err)
		}
		rec := &storagev1.RetainedRecord{}
		if err := decodeValue(iter.Key(), v, rec); err != nil {
			return 0, err
		}
		topic := string(iter.Key()[len(prefix):])
		shard := int(rec.Shard)
		if shard >= db.opts.NShards {
			shard = ShardOf(topic, db.opts.NShards)
		}
		cur := &storagev1.RetainedRecord{}
		found, err := db.getValue(retainedKey(shard, topic), cur)
		if err != nil {
			return 0, err
		}
		if !found || retainedorder.Newer(cur, rec) == rec {
			_ = b.Set(retainedKey(shard, topic), encodeValue(rec), nil)
		}
		_ = b.Delete(iter.Key(), nil)
	}
	if err := iter.Error(); err != nil {
		return 0, wrapPebble("migrate retained", err)
	}
	if n == 0 {
		return 0, nil
	}
	opts := pebble.Sync
	if db.opts.UnsafeNoSync {
		opts = pebble.NoSync
	}
	if err := b.Commit(opts); err != nil {
		return 0, wrapPebble("migrate retained", err)
	}
	return n, nil
}
