// Package storage is dsd's durable message store: one Pebble instance per
// site holding n_shards shards, each with one writer that applies a single
// command sequence (batches, idle ticks, generation add and drop, session
// commands) through a pure apply function, and the two message layouts of
// package lts: wildcard_optimized (v1, lts.Layout) and wildcard_optimized_v2
// (time-first, lts.TimeLayout), chosen per generation.
//
// # Durability
//
// Store returns only after its batch is committed with pebble.Sync (unless
// Options.UnsafeNoSync). Each shard buffers Stores and flushes when it has
// no commit in flight, or at BufferMaxItems / BufferMaxBytes, or when an
// item has waited FlushInterval; up to MaxInflightCommits batches of one
// shard may wait for their fsync at once, and Pebble merges the fsyncs of
// all shards. Batches are applied to Pebble in command order, and their
// fsyncs are awaited in the same order. After any commit or fsync error the
// engine is fail-stop: every later write fails with ErrFailStop until the
// DB is reopened, so nothing is acked after an I/O error.
//
// # Clocks
//
// A shard assigns strictly increasing microsecond timestamps,
// max(now_us, last+1), and persists the last one in every batch. Its
// readable clock R (ReadableClock) is the largest timestamp such that
// everything <= R is committed; it advances only after a commit's fsync
// returns. Only while the current generation is v1: an idle shard whose
// last data epoch is incomplete issues a tick (a synced clock write) once
// the wall clock is in a later epoch, so the epoch becomes readable about
// one epoch plus IdleTickInterval later. Ticks are suspended while the wall
// clock is more than MaxClockSkew behind the persisted clock. A v2 current
// generation needs no ticks: every commit's fsync advances R, and
// everything up to R is readable. Watermarks returns the last assigned
// timestamp + 1.
//
// # Ordering
//
// Timestamps are unique per shard. Inside a v1 stream (shard, generation,
// static index) keys sort by epoch, then by the hashes of the varying
// levels, then by time; inside a v2 stream they sort by time. Either way
// the messages of one topic are in timestamp order in their stream, which
// gives MQTT's per-(publisher, topic) order because a publisher's messages
// all go to its shard (ShardOf: FNV-1a 64 of the client id modulo
// n_shards). Nothing is ordered across topics in v1; v2 streams are in
// timestamp order. Next on a v1 stream with varying levels in the current
// generation returns only completed epochs (ts < (R >> epoch_bits) <<
// epoch_bits), so no later write can land behind a cursor; a v1 stream
// without varying levels and every v2 stream read up to R (a later write
// always sorts after R); a non-current generation reads everything
// committed.
//
// A v2 Next with constants at varying levels merge-joins on ts the index
// lists of those levels (S 10 | gen | 05 | static | n | hash) and the data
// keys (iterator_v2.go); "+" levels are not read from an index. Every hit is
// matched against the message's real topic, since hashes can collide.
//
// # Keys
//
// Every key starts with a 2-byte big-endian shard id S and a 1-byte
// keyspace tag. Site-wide keys use S = 0xFFFF. Integers are big-endian.
//
//	FF FF 00                        site record        -> SiteMeta
//	S 01                            shard clock        -> ShardClock
//	S 02 | gen (8)                  generation record  -> Generation
//	S 03 | client id (raw bytes)    producer state     -> ProducerState
//	S 08                            session guard counter -> SessionGuardCounter
//	S 09 | n (2) | client id | sub  session parts (see Sessions)
//	S 04 | topic name (raw bytes)   retained record -> RetainedRecord (retained.go)
//	S 0A | timestamp (8)            pending retained will of an earlier version -> Message
//	S 0B | n (2) | filter | sub     shared group parts (shared.go): 00 record
//	                                -> SharedGroupRecord, 01 | shard (2) | gen (8) |
//	                                static -> SharedGroupStream, 02 | grant id (8)
//	                                -> SharedGrant
//	S 0C                            replicated shard: index of the last applied
//	                                raft entry -> version 01 | index (8)
//	S 0D                            replicated shard: a snapshot is being
//	                                installed -> version 01 | index (8)
//	                                (snapshot.go)
//	S 10 | gen (8) | 01 | edge key  trie edge          -> lts edge record
//	S 10 | gen (8) | 02 | static    message count      -> StreamCount
//	S 10 | gen (8) | 03 | layout key  message          -> Message
//	S 10 | gen (8) | 05 | static | n (2) | hash | ts (8)  v2 index key -> empty
//
// "edge key" and "edge record" are lts.EdgeRecordKey and
// lts.AppendEdgeRecord (the record has its own version byte). "static" is
// the static index, TopicIndexBytes bytes. The layout key depends on the
// generation's Layout.Type, with the parameters frozen in its Layout:
//
//   - wildcard_optimized (v1): lts.Layout's key: static index | epoch =
//     ts >> epoch_bits | hash(v1) … hash(vN) (bits_per_topic_level each) |
//     ts & (2^epoch_bits-1).
//   - wildcard_optimized_v2: lts.TimeLayout's data key: static index | ts
//     (8). Each message also has, in the same batch, one index key per
//     varying level n (from 1) under sub-tag 05, whose "hash" is the first
//     bits_per_topic_level/8 bytes of lts.HashLevel(v_n); its value is
//     empty. Sub-tag 05 is never written in a v1 generation.
//
// An iterator's last seen key has the format of its generation's layout,
// which resolves it; iterators carry no layout of their own. Everything a
// generation owns lies under S 10 | gen, so dropping it is one range delete
// plus the deletion of its record, in one batch, then a compaction of the
// range. Generation ids start at 1 and only grow; a missing id below the
// current one was dropped.
//
// # Values
//
// Every value written by this package, except the empty values of v2 index
// keys, is a format version byte (1) followed by the deterministic protobuf
// encoding of the storagev1 message named above (gen/strata/storage/v1). The stored Message has TimestampUs and
// PublisherClientId filled in. Iterators handed to clients use the same
// framing around a storagev1.Iterator, and decoding bad iterator bytes fails
// with ErrInvalidIterator, never a panic.
//
// The trie of a generation is written in the same batch as the first data
// that needed each edge, and rebuilt from its edges on Open. Message counts
// per (generation, stream) and producer states are absolute values,
// rewritten in the same batch as the data (no merge operator).
//
// # What may never change
//
// The tags and sub-tags above, the key shapes of both layouts, value
// version 1, the
// SiteMeta format version (DataDirFormatVersion, checked at Open), ShardOf,
// and the meaning of a generation's frozen Layout. A new format gets a new
// version byte, tag, or layout type; the old reader stays. n_shards is
// recorded at first start; Open with another value fails with
// ErrNShardsMismatch.
//
// # Sessions
//
// An MQTT session lives in its client's shard (ShardOf), under S 09, which
// retention never touches; n is the client id's length, so one client's
// prefix is never another's:
//
//	S 09 | n | cid | 00                             record     -> SessionRecord
//	S 09 | n | cid | 01 | sub id (8)                subscription -> Subscription
//	S 09 | n | cid | 02 | state id (8)              state version -> SubscriptionState
//	S 09 | n | cid | 03 | sub id (8) | shard (2) | gen (8) | static  stream ring -> StreamRing
//	S 09 | n | cid | 04 | sub id (8) | batch id (8) retained batch -> RetainedBatch
//
// A commit rewrites only the keys it changes. Session commands (open,
// commit, disconnect, delete, release, expiry sweep) are commands of the
// shard's sequence, applied by the pure apply and synced like a batch; the
// whole session state is also held in memory (shardState.sessions), loaded
// at Open.
//
// Guards come from the shard's counter S 08, advanced in the batch that
// opens a session; it never goes back, also when sessions are deleted, and
// a new guard is also above every producer epoch of the client. Every
// state-changing session command names the guard and is refused with
// ErrStaleGuard unless it is the session's current one. The producer epoch
// of a client with a session must be its guard (else ErrStaleEpoch); when a
// session ends its producer record is marked closed (later Stores under its
// guard are refused) and its held QoS 2 ids are dropped. Those ids live in
// the ProducerState (held_qos2_ids), inserted in the batch of their message.
//
// A session whose disconnected_at + expiry <= now is absent for every
// reader and command, and is deleted in the batch of the next open, or by
// the sweep every SessionGCInterval. After a commit that revokes a guard
// (takeover, delete, expiry), OnGuardRevoked subscribers are told.
// EndGatewayEpoch ends, abnormally, the connections of the sessions a dead
// gateway epoch still owns (dsd/server's leases).
//
// # Wills
//
// A session's will timer is SessionRecord.will_at_us, armed by an abnormal
// end of the connection at now + will delay, no later than the session's
// end; a resume cancels it, and a session that ends publishes a pending
// will in the batch that ends it. Firing is one command of the shard's
// sequence: the will is stored as a message of the client, the timer
// cleared and will_fired_at_us set, atomically, so it fires exactly once.
// The writer fires due timers at every idle tick and reqTick. A retained
// will writes its retained record in that batch. See will.go.
//
// # Notifications
//
// ReadableClockChanged and StreamsChanged return channels that are closed
// after a commit advances a shard's readable clock or adds streams or
// generations; a reader takes the channel first, then reads, so no wake-up
// is lost. They drive dsd's push delivery (the GatewayLink).
//
// # Goroutines and locks
//
// Open starts, per shard, a writer and a syncer, plus one compactor for the
// DB; Close stops them and waits. Each shard has one mutex (shard.mu,
// RWMutex) guarding its state; the writer mutates the state only under it,
// readers hold it only to look at the state, and no Pebble I/O happens
// under it. There is no lock order: no code holds two shard locks.
//
// # Retained messages
//
// A shard holds the last retained update of its own publishers per topic:
//
//	S 04 | topic name (raw bytes)   retained record -> RetainedRecord
//
// written by the apply that stores the message (a Store, a will), in the
// same batch. A read merges the shards: per topic, the record with the
// greatest order key (timestamp, shard, publisher) decides; tombstones
// hide older records of other shards. Expired messages are never returned
// and become tombstones by a command of their shard. The full rules, and
// the move of an earlier version's site-wide keyspace (FF FF 20) into the
// shards, are in retained.go and docs/retained.md.
//
// # Raft state
//
// The site-wide keyspace FF FF 30 holds the raft logs, hard states and
// snapshots of the site's raft groups (the metadata group now, shard
// groups later), keyed by group id; package dsd/raftlog owns its layout
// and writes it through Engine. This package never reads or writes it.
package storage
