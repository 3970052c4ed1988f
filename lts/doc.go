// Package lts is Strata's learned topic structure: a trie that learns which
// topic levels vary, maps each topic name to a stream (static index) plus
// its varying levels, maps topic filters to the streams that can hold
// matching topics, and builds the byte keys under which dsd stores messages:
// the wildcard_optimized layout (Layout) and the time-first
// wildcard_optimized_v2 layout (TimeLayout).
//
// The package is pure: topic levels and byte slices in, byte slices out. It
// does no I/O and knows nothing of MQTT packets, Pebble or gRPC.
//
// # Topics
//
// ValidateTopicName and ValidateTopicFilter apply MQTT 5 section 4.7 and
// 1.5.4; their errors wrap one sentinel each (ErrEmptyTopic,
// ErrWildcardNotWholeLevel, ...). SplitTopic splits at '/', keeping empty
// levels. MatchTopic is the plain reference matcher, used to re-check a
// stored message's real topic against a filter.
//
// # The trie
//
// A Trie has states and edges. An edge goes from a state to a child and is
// labelled with a concrete level (KindLevel), the learned wildcard '+'
// (KindPlus) or the end of the topic (KindEnd). There are two roots: one for
// topics whose first level starts with '$' and one for all others, so
// filters starting with '+' or '#' never reach '$' topics [MQTT-4.7.2-1].
//
// Learning a topic walks its levels from the root. An existing concrete edge
// is followed; otherwise an existing '+' edge is followed and the level is
// varying. If neither exists, a concrete edge is added, and when the state
// then has WildcardThresholds[depth] concrete children a '+' edge is added
// too, so that later new values go to '+' (the topic that crossed the
// threshold keeps its concrete edge). A threshold of 0 adds '+' at once.
// Finally the end edge is followed or added: its child's id is the topic's
// static index. Exact edges win over '+' and nothing is ever removed, so a
// learned topic's static index and varying levels never change.
//
// The trie is bounded: once it has Config.MaxTrieStates states, a new
// concrete value is learned as varying (a '+' edge is added instead), so
// from then on only '+' and end edges are added, at most one of each per
// state, and learning keeps working. Stats reports AtCapacity and how many
// such '+' edges were added.
//
// State ids are deterministic, so replicas that learn the same topics in the
// same order build identical tries. The id of the child of an edge is
//
//	SHA-256( parent id as 8 bytes big-endian | kind (1 byte) |
//	         rehash as 4 bytes big-endian | label bytes )
//
// truncated to its first TopicIndexBytes bytes, read big-endian. The roots
// use parent 0 and kind 0x80 (plain) or 0x81 ('$'). Rehash is the smallest
// attempt number, from 0, whose id is not yet used by another state; it is
// stored with the edge. So an id collision is resolved deterministically, in
// insertion order, and two states are never merged.
//
// Match walks the trie with a filter: a concrete filter level follows its
// edge and the '+' edge (constraint Equal(level)), '+' follows every level
// edge and the '+' edge (constraint Any), '#' takes the whole subtree
// including the current state's end ("a/#" matches "a"). Only existing paths
// are returned. Each result is a static index with one Constraint per
// varying level.
//
// CopyWildcards starts the trie of a new generation with only the paths that
// contain a '+' (and their prefixes). Structure gives the learned shape of a
// stream (levels with "+" at varying positions).
//
// # Edge records
//
// Every edge that Learn adds is returned in Learned.NewEdges and must be
// persisted in the same write batch as the data that needed it. Its record
// (AppendEdgeRecord), stored under EdgeRecordKey (the child id), is:
//
//	offset  size    field
//	0       1       version, 1
//	1       1       W = TopicIndexBytes (1..8)
//	2       W       parent id, big-endian
//	2+W     1       kind: 0 level, 1 '+', 2 end
//	3+W     W       child id, big-endian
//	3+2W    1..5    rehash, unsigned varint (minimal)
//	...     rest    label bytes (level edges only; at most 65535)
//
// Restore rebuilds a trie from its edges in any order and checks each child
// id against the id hash, so a restored trie gives every topic the same key
// as before. DecodeEdgeRecord and Restore never panic; damaged data gives
// errors wrapping ErrCorruption.
//
// # Keys: the wildcard_optimized layout
//
// A Keymapper turns a vector of uint64 coordinates into a fixed-length,
// big-endian byte key by concatenating bit fields (BitSource), so that byte
// order is numeric order. A KeyFilter built from per-coordinate constraints
// (any, equal, range) tells whether a key matches (Matches), finds the
// smallest matching key at or after a given key (Ratchet) or after it
// (Increment), and gives seek bounds (Bounds). Ranges over a coordinate that
// is split across fields are decomposed exactly into boxes, so no matching
// key is skipped and none outside the range is accepted.
//
// Layout uses the vector [static index, timestamp µs, HashLevel(v1), ...,
// HashLevel(vN)] for a stream with N varying levels. With W =
// TopicIndexBytes, E = EpochBits and B = BitsPerTopicLevel the key is, from
// the first (most significant) bit:
//
//	bits            field
//	8W              static index
//	64-E            epoch = ts >> E
//	B  (xN)         the B high bits of HashLevel(v1), ..., HashLevel(vN)
//	E               ts & (2^E - 1)
//
// for a length of W + 8 + N*B/8 bytes (12, 20, 28 bytes for N = 0, 1, 2 with
// the defaults W = 4, E = 20, B = 64). Inside a stream, keys sort by epoch,
// then by the varying levels' hashes, then by time; with N = 0 the key is
// the static index followed by the timestamp as 8 bytes big-endian.
// HashLevel is the first 8 bytes of SHA-256 of the level, big-endian.
//
// # Keys: the wildcard_optimized_v2 layout
//
// TimeLayout keeps time first. A message has one data key and, for each
// varying level n (from 1), one index key:
//
//	data key:  static (W) | ts (8)
//	index key: static (W) | n (2) | the B/8 high bytes of HashLevel(v_n) | ts (8)
//
// so every list (a stream's data keys, or the index keys of one level and
// value) is in timestamp order, and new messages always sort after old
// ones: a reader can read up to any committed time without epochs. A
// filter with constants at varying levels is answered by a merge-join on ts
// of the index lists of those levels and the data keys. With N = 0 the data
// key equals Layout's key. EpochBits is unused.
//
// # What may never change
//
// Keys and edge records are on disk. For a given Config the following are
// frozen: the id hash (stateIDHash), the LabelKind values, the root kinds,
// the rehash rule (smallest free attempt), the learning rules (thresholds,
// capacity, exact edges first), HashLevel, the two key layouts above and edge
// record version 1. A change to any of them is a new layout or record
// version, and the old code stays to read old generations.
package lts
