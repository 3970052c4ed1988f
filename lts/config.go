package lts

import (
	"fmt"
	"strings"
)

// Defaults of Config (see ARCHITECTURE.md section 8, keys
// durable_storage.messages.layout.*).
const (
	// DefaultBitsPerTopicLevel is the default width of a varying-level hash.
	DefaultBitsPerTopicLevel = 64
	// DefaultEpochBits is the default epoch length: 2^20 µs ≈ 1.05 s.
	DefaultEpochBits = 20
	// DefaultTopicIndexBytes is the default width of a state id.
	DefaultTopicIndexBytes = 4
	// DefaultMaxTrieStates is the default cap on the number of trie states.
	DefaultMaxTrieStates = 100000
	// DefaultMaxTopicLevels is a suggested cap on the number of levels of a
	// topic name or filter, for callers of ValidateTopicName and
	// ValidateTopicFilter. MQTT itself has no such limit.
	DefaultMaxTopicLevels = 128
)

// Limits enforced by Config.Validate.
const (
	// MinTopicIndexBytes and MaxTopicIndexBytes bound TopicIndexBytes.
	MinTopicIndexBytes = 1
	MaxTopicIndexBytes = 8
	// MaxWildcardThresholds bounds the length of WildcardThresholds.
	MaxWildcardThresholds = 256
)

// DefaultWildcardThresholds returns the default learning thresholds: 100 at
// the first level, 20 below.
func DefaultWildcardThresholds() []int { return []int{100, 20} }

// Config holds the frozen parameters of one generation's trie and
// wildcard_optimized key layout. dsd records it with the generation; a
// generation must be reopened with the same values.
//
// The zero value is not valid: start from DefaultConfig.
type Config struct {
	// BitsPerTopicLevel is the number of bits of each varying level's hash
	// stored in a key. A multiple of 8 in [8, 64]. Default 64.
	BitsPerTopicLevel int `toml:"bits_per_topic_level"`
	// EpochBits splits a timestamp (µs) into an epoch (ts >> EpochBits,
	// 64-EpochBits bits) and an offset (the low EpochBits bits); an epoch
	// lasts 2^EpochBits µs. In [0, 64]. Default 20 (≈1.05 s).
	EpochBits int `toml:"epoch_bits"`
	// TopicIndexBytes is the width in bytes of a trie state id, and so of
	// the static index at the front of every key. In [1, 8]. Default 4.
	TopicIndexBytes int `toml:"topic_index_bytes"`
	// WildcardThresholds[d] is the number of distinct concrete values at
	// depth d (0 = first level) after which new values at that position are
	// learned as varying ('+'). The last element applies to all deeper
	// levels. 0 means "learn as varying at once". Default [100, 20].
	WildcardThresholds []int `toml:"wildcard_thresholds"`
	// MaxTrieStates caps the number of trie states that concrete levels may
	// create; past it, new concrete values are learned as varying. At most
	// a quarter of the id space (2^(8*TopicIndexBytes-2)). Default 100000.
	MaxTrieStates int `toml:"max_trie_states"`
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		BitsPerTopicLevel:  DefaultBitsPerTopicLevel,
		EpochBits:          DefaultEpochBits,
		TopicIndexBytes:    DefaultTopicIndexBytes,
		WildcardThresholds: DefaultWildcardThresholds(),
		MaxTrieStates:      DefaultMaxTrieStates,
	}
}

// Clone returns a deep copy of c.
func (c Config) Clone() Config {
	c.WildcardThresholds = append([]int(nil), c.WildcardThresholds...)
	return c
}

// Validate reports the first invalid field of c. The error wraps
// ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if c.BitsPerTopicLevel < 8 || c.BitsPerTopicLevel > 64 || c.BitsPerTopicLevel%8 != 0 {
		return bad("bits_per_topic_level = %d: must be a multiple of 8 in [8, 64]", c.BitsPerTopicLevel)
	}
	if c.EpochBits < 0 || c.EpochBits > 64 {
		return bad("epoch_bits = %d: must be in [0, 64]", c.EpochBits)
	}
	if c.TopicIndexBytes < MinTopicIndexBytes || c.TopicIndexBytes > MaxTopicIndexBytes {
		return bad("topic_index_bytes = %d: must be in [%d, %d]", c.TopicIndexBytes, MinTopicIndexBytes, MaxTopicIndexBytes)
	}
	// The key is static (8*TopicIndexBytes bits) + timestamp (64 bits,
	// split into epoch and offset) + N*BitsPerTopicLevel bits, so with the
	// checks above it is always a whole number of bytes. Keep the check so
	// that a future change to the rules above cannot break it silently.
	if (8*c.TopicIndexBytes+64)%8 != 0 || c.BitsPerTopicLevel%8 != 0 {
		return bad("key length is not a whole number of bytes")
	}
	if len(c.WildcardThresholds) == 0 {
		return bad("wildcard_thresholds is empty: give at least one threshold")
	}
	if len(c.WildcardThresholds) > MaxWildcardThresholds {
		return bad("wildcard_thresholds has %d elements: at most %d", len(c.WildcardThresholds), MaxWildcardThresholds)
	}
	for i, th := range c.WildcardThresholds {
		if th < 0 {
			return bad("wildcard_thresholds[%d] = %d: must be >= 0", i, th)
		}
	}
	if c.MaxTrieStates < 1 {
		return bad("max_trie_states = %d: must be >= 1", c.MaxTrieStates)
	}
	if limit := maxStatesFor(c.TopicIndexBytes); uint64(c.MaxTrieStates) > limit {
		return bad("max_trie_states = %d: at most %d with topic_index_bytes = %d (a quarter of the id space, so that id collisions stay rare)",
			c.MaxTrieStates, limit, c.TopicIndexBytes)
	}
	return nil
}

// maxStatesFor is the largest MaxTrieStates allowed for an id width.
func maxStatesFor(indexBytes int) uint64 {
	bits := 8*indexBytes - 2
	if bits >= 63 {
		return 1 << 62
	}
	return 1 << bits
}

// String prints c in the configuration file's key names, for the start-up
// log.
func (c Config) String() string {
	ths := make([]string, len(c.WildcardThresholds))
	for i, th := range c.WildcardThresholds {
		ths[i] = fmt.Sprint(th)
	}
	return fmt.Sprintf("bits_per_topic_level=%d epoch_bits=%d topic_index_bytes=%d wildcard_thresholds=[%s] max_trie_states=%d",
		c.BitsPerTopicLevel, c.EpochBits, c.TopicIndexBytes, strings.Join(ths, ", "), c.MaxTrieStates)
}

// threshold returns the learning threshold for children of a state at the
// given depth (0 = the root's children, the first level).
func (c *Config) threshold(depth int) int {
	if depth >= len(c.WildcardThresholds) {
		depth = len(c.WildcardThresholds) - 1
	}
	return c.WildcardThresholds[depth]
}
