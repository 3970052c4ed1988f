package storage

import (
	"encoding/binary"
	"fmt"
)

// Keyspace tags: the byte after the 2-byte shard id. doc.go is the normative
// description; these values are on disk and never change.
const (
	tagSiteMeta   byte = 0x00 // under sitePrefix only
	tagShardClock byte = 0x01 // S|01 -> ShardClock
	tagGeneration byte = 0x02 // S|02|gen -> Generation
	tagProducer   byte = 0x03 // S|03|client id -> ProducerState
	// 0x04: tagRetained (retained.go); 0x05..0x07 are free.
	tagSessionGuard byte = 0x08 // S|08 -> SessionGuardCounter
	tagSession      byte = 0x09 // S|09|len(cid) (2)|cid|sub|... : sessions (session_keys.go)
	tagSharedGroup  byte = 0x0B // S|0B|len(filter) (2)|filter|sub|... : shared groups (shared.go); 0x0A: tagWillRetained (will.go)
	tagApplied      byte = 0x0C // S|0C -> 01 | raft index (8): a replicated shard's applied entry (replication.go)
	tagInstalling   byte = 0x0D // S|0D -> 01 | raft index (8): a shard snapshot being installed (snapshot.go)
	tagGenData      byte = 0x10 // S|10|gen|sub|... : everything a generation owns
)

// Sub-keyspaces of a generation (after S|10|gen).
const (
	subTrie   byte = 0x01 // trie edge records from lts
	subCount  byte = 0x02 // message count per stream (static index)
	subData   byte = 0x03 // messages, keyed by the layout key
	subLayout byte = 0x04 // reserved
	subIndex  byte = 0x05 // wildcard_optimized_v2 index keys (empty values)
)

// tagRaft (after FF FF) is the raft state keyspace of dsd/raftlog
// (raftlog.Prefix); this package only reserves it.
const tagRaft byte = 0x30

// siteShard is the shard id of site-wide keys.
const siteShard = 0xFFFF

// Value format versions: the first byte of every stored value.
const (
	valueVersion1 byte = 1
)

// DataDirFormatVersion is the data dir format this code writes and reads.
const DataDirFormatVersion = 1

func shardPrefix(shard int, tag byte) []byte {
	return appendShardPrefix(nil, shard, tag)
}

// appendShardPrefix appends S|tag to b. The key builders below size their
// buffer once: a Store builds several keys per message.
func appendShardPrefix(b []byte, shard int, tag byte) []byte {
	return append(b, byte(shard>>8), byte(shard), tag)
}

func siteMetaKey() []byte { return shardPrefix(siteShard, tagSiteMeta) }

func shardClockKey(shard int) []byte { return shardPrefix(shard, tagShardClock) }

func shardAppliedKey(shard int) []byte { return shardPrefix(shard, tagApplied) }

func shardInstallingKey(shard int) []byte { return shardPrefix(shard, tagInstalling) }

func generationKey(shard int, gen uint64) []byte {
	return binary.BigEndian.AppendUint64(shardPrefix(shard, tagGeneration), gen)
}

func producerKey(shard int, clientID string) []byte {
	return append(appendShardPrefix(make([]byte, 0, 3+len(clientID)), shard, tagProducer), clientID...)
}

// genPrefix is S|10|gen: the range that DropGeneration deletes.
func genPrefix(shard int, gen uint64) []byte {
	return binary.BigEndian.AppendUint64(shardPrefix(shard, tagGenData), gen)
}

func genSubPrefix(shard int, gen uint64, sub byte) []byte {
	return appendGenSubPrefix(nil, shard, gen, sub)
}

// appendGenSubPrefix appends S|10|gen|sub to b.
func appendGenSubPrefix(b []byte, shard int, gen uint64, sub byte) []byte {
	b = appendShardPrefix(b, shard, tagGenData)
	b = binary.BigEndian.AppendUint64(b, gen)
	return append(b, sub)
}

func trieKey(shard int, gen uint64, rec []byte) []byte {
	return append(genSubPrefix(shard, gen, subTrie), rec...)
}

func countKey(shard int, gen uint64, static []byte) []byte {
	return append(appendGenSubPrefix(make([]byte, 0, dataKeyPrefixLen+len(static)), shard, gen, subCount), static...)
}

func dataKey(shard int, gen uint64, layoutKey []byte) []byte {
	return append(appendGenSubPrefix(make([]byte, 0, dataKeyPrefixLen+len(layoutKey)), shard, gen, subData), layoutKey...)
}

// dataKeyPrefixLen is the length of S|10|gen|03, before the layout key.
const dataKeyPrefixLen = 2 + 1 + 8 + 1

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xFF: no upper bound
}

// prettyKey renders a key for tests and debugging.
func prettyKey(k []byte) string {
	if len(k) < 3 {
		return fmt.Sprintf("%x", k)
	}
	shard := int(binary.BigEndian.Uint16(k))
	rest := k[3:]
	switch k[2] {
	case tagShardClock:
		return fmt.Sprintf("%d/clock", shard)
	case tagGeneration:
		if len(rest) == 8 {
			return fmt.Sprintf("%d/gen/%d", shard, binary.BigEndian.Uint64(rest))
		}
	case tagProducer:
		return fmt.Sprintf("%d/producer/%q", shard, rest)
	case tagApplied:
		return fmt.Sprintf("%d/applied", shard)
	case tagInstalling:
		return fmt.Sprintf("%d/installing", shard)
	case tagSessionGuard:
		return fmt.Sprintf("%d/session-guard", shard)
	case tagSession:
		return prettySessionKey(shard, rest)
	case tagSharedGroup:
		return fmt.Sprintf("%d/shared/%x", shard, rest)
	case tagGenData:
		if len(rest) >= 9 {
			gen := binary.BigEndian.Uint64(rest)
			name := map[byte]string{subTrie: "trie", subCount: "count", subData: "data", subIndex: "index"}[rest[8]]
			return fmt.Sprintf("%d/g%d/%s/%x", shard, gen, name, rest[9:])
		}
	}
	if shard == siteShard && k[2] == tagSiteMeta {
		return "site/meta"
	}
	if shard == siteShard && k[2] == tagRaft {
		return fmt.Sprintf("raft/%x", rest)
	}
	return fmt.Sprintf("%x", k)
}
