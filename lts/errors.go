package lts

import "errors"

// Topic validation errors. Each error returned by ValidateTopicName and
// ValidateTopicFilter wraps exactly one of these, with the position and the
// offending level as detail, so callers can test with errors.Is and still log
// something a human can act on.
var (
	// ErrEmptyTopic: a topic name or filter must be at least one character
	// long [MQTT-4.7.3-1].
	ErrEmptyTopic = errors.New("lts: empty topic")
	// ErrTopicTooLong: a topic is a UTF-8 string of at most 65,535 bytes
	// [MQTT-1.5.4].
	ErrTopicTooLong = errors.New("lts: topic longer than 65535 bytes")
	// ErrInvalidUTF8: a topic must be well-formed UTF-8 [MQTT-1.5.4-1].
	ErrInvalidUTF8 = errors.New("lts: topic is not valid UTF-8")
	// ErrNullCharacter: a topic must not contain U+0000 [MQTT-1.5.4-2],
	// [MQTT-4.7.3-2].
	ErrNullCharacter = errors.New("lts: topic contains U+0000")
	// ErrWildcardInTopicName: '+' and '#' are only allowed in topic filters
	// [MQTT-3.3.2-2].
	ErrWildcardInTopicName = errors.New("lts: wildcard in topic name")
	// ErrWildcardNotWholeLevel: '+' and '#' must occupy a whole level
	// [MQTT-4.7.1-1], [MQTT-4.7.1-2].
	ErrWildcardNotWholeLevel = errors.New("lts: wildcard does not occupy a whole level")
	// ErrMultiLevelNotLast: '#' must be the last level of a filter
	// [MQTT-4.7.1-1].
	ErrMultiLevelNotLast = errors.New("lts: '#' is not the last level")
	// ErrTooManyLevels: the topic has more levels than the configured cap.
	ErrTooManyLevels = errors.New("lts: too many topic levels")
)

// Configuration errors.
var (
	// ErrInvalidConfig is wrapped by every error from Config.Validate and
	// by constructors that refuse a configuration.
	ErrInvalidConfig = errors.New("lts: invalid config")
)

// Trie errors.
var (
	// ErrIDSpaceExhausted: no free state id could be found for a new trie
	// state. It can only happen with a very small TopicIndexBytes; the trie
	// is unchanged when it is returned.
	ErrIDSpaceExhausted = errors.New("lts: state id space exhausted")
	// ErrUnknownStatic: the static index is not a stream of this trie.
	ErrUnknownStatic = errors.New("lts: unknown static index")
)

// Decoding errors.
var (
	// ErrCorruption is wrapped by every error that reports bytes that cannot
	// have been written by this package: malformed edge records, a set of
	// records that does not form a trie, keys of the wrong length. Callers
	// test for it with errors.Is to tell data damage from misuse.
	ErrCorruption = errors.New("lts: corruption")
	// ErrUnsupportedVersion: a record carries a version byte this build
	// does not know (it may have been written by a newer release).
	ErrUnsupportedVersion = errors.New("lts: unsupported record version")
)
