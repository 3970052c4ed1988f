package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Errors returned by the storage engine. Callers test them with errors.Is;
// dsd/server maps them to gRPC status codes in one table.
var (
	// ErrInvalidArgument is the class of every error caused by a bad request:
	// a topic name, topic filter, iterator, message or argument that the
	// engine refuses. ErrInvalidTopic, ErrInvalidFilter, ErrInvalidIterator and
	// ErrMessageTooLarge all match it with errors.Is.
	ErrInvalidArgument = errors.New("storage: invalid argument")
	// ErrInvalidTopic: a topic name is empty, too long, or holds a wildcard.
	ErrInvalidTopic = invalidClass("storage: invalid topic name")
	// ErrInvalidFilter: a topic filter is malformed.
	ErrInvalidFilter = invalidClass("storage: invalid topic filter")
	// ErrInvalidIterator: iterator bytes do not decode, or name a shard,
	// generation or stream that cannot exist.
	ErrInvalidIterator = invalidClass("storage: invalid iterator")
	// ErrMessageTooLarge: a message is larger than Options.MaxMessageBytes.
	ErrMessageTooLarge = invalidClass("storage: message too large")

	// ErrGenerationDropped: the iterator's generation was dropped (retention or
	// an operator); its messages are gone.
	ErrGenerationDropped = errors.New("storage: generation dropped")
	// ErrCurrentGeneration: the current generation cannot be dropped.
	ErrCurrentGeneration = invalidClass("storage: cannot drop the current generation")
	// ErrUnknownGeneration: no such generation (never created).
	ErrUnknownGeneration = invalidClass("storage: unknown generation")
	// ErrSequenceGap: a producer's first sequence number leaves a gap after,
	// or partially overlaps, the last accepted one.
	ErrSequenceGap = errors.New("storage: producer sequence gap")
	// ErrStaleEpoch: a producer epoch older than the last accepted one (a
	// fenced, dead writer).
	ErrStaleEpoch = errors.New("storage: stale producer epoch")
	// ErrClosed: the DB is closed or closing.
	ErrClosed = errors.New("storage: closed")
	// ErrFailStop: an earlier commit or fsync failed; the engine refuses all
	// writes until it is reopened, so nothing is ever acked after an I/O error.
	ErrFailStop = errors.New("storage: fail-stop after a write error")
	// ErrDiskFull: the data dir's filesystem has less free space than the
	// watermark (Options.MinFreeBytes), or a write met ENOSPC. The engine
	// refuses writes while it lasts and keeps serving reads; a write that
	// met ENOSPC in Pebble also matches ErrFailStop. Its text is what a
	// client sees ("dsd: disk full: N bytes free under the watermark M on
	// DIR"), hence the dsd prefix.
	ErrDiskFull = errors.New("dsd: disk full")
	// ErrLeftUnclosed: Close gave up waiting for a write stuck in Pebble
	// (Options.CloseTimeout), or Pebble met a full disk where it cannot go
	// on, and Close left Pebble unclosed and the data dir locked; the
	// process should exit. What was acknowledged is synced.
	ErrLeftUnclosed = errors.New("storage: engine left unclosed")
	// ErrCorruption: on-disk data is corrupt. The message names the file when
	// Pebble does.
	ErrCorruption = errors.New("storage: corruption")
	// ErrNShardsMismatch: Options.NShards differs from the value recorded at
	// the first start of the data dir.
	ErrNShardsMismatch = errors.New("storage: n_shards differs from the data dir")
	// ErrLocked: another process (or another DB in this process) holds the
	// data dir.
	ErrLocked = errors.New("storage: data dir is locked")
	// ErrFormatVersion: the data dir was written by an unknown format version.
	ErrFormatVersion = errors.New("storage: unsupported data dir format version")
)

// classError is a sentinel that also matches a class sentinel with errors.Is.
type classError struct {
	msg   string
	class error
}

func (e *classError) Error() string        { return e.msg }
func (e *classError) Is(target error) bool { return target == e.class }

func invalidClass(msg string) error { return &classError{msg: msg, class: ErrInvalidArgument} }

// wrapPebble turns a Pebble error into a storage error, marking corruption
// and a full disk.
func wrapPebble(op string, err error) error {
	if err == nil {
		return nil
	}
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %s: %w", ErrCorruption, op, err)
	}
	if isNoSpace(err) {
		return fmt.Errorf("%w: %s: %w", ErrDiskFull, op, err)
	}
	return fmt.Errorf("storage: %s: %w", op, err)
}
