package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stratamq/strata/lts"
)

// Limits that are not configurable.
const (
	// MaxShards bounds Options.NShards (shard ids are 2 bytes; 0xFFFF is the
	// site-wide prefix).
	MaxShards = 4096
	// MaxClientIDBytes bounds the client id of a Store (MQTT allows 65535
	// bytes; the key of a producer record holds it).
	MaxClientIDBytes = 65535
)

// LayoutConfig is the layout of new generations. A generation freezes the
// config it was created with.
type LayoutConfig struct {
	// Type is "wildcard_optimized_v2" (time-first keys plus per-level
	// indexes: everything committed is readable at once) or
	// "wildcard_optimized" (v1: epoch-interleaved keys, wildcard streams of
	// the current generation readable by whole epochs). Default
	// "wildcard_optimized_v2".
	Type string
	// BitsPerTopicLevel is the hash width of a varying level; a multiple of 8
	// in 8..64. Default 64.
	BitsPerTopicLevel int
	// EpochBits: an epoch is 2^EpochBits µs; 1..64 (64: one endless epoch,
	// wildcard streams readable up to the readable clock). Default 20 (~1.05 s).
	// Used by wildcard_optimized only (v2 records 0).
	EpochBits int
	// TopicIndexBytes is the static index width; 1..8. Default 4.
	TopicIndexBytes int
	// WildcardThresholds are the LTS thresholds: the first level, then deeper
	// levels (the last value repeats). Default [100, 20].
	WildcardThresholds []int
	// MaxTrieStates bounds the trie; past it new values are learned as
	// varying. Default 100000.
	MaxTrieStates int
}

// Options configures Open. The zero value plus a DataDir is valid after
// EnsureDefaults.
type Options struct {
	// DataDir is the directory of the Pebble instance. Required.
	DataDir string
	// FS is the filesystem; nil means vfs.Default (the OS).
	FS vfs.FS
	// NShards is the number of shards, fixed at first start. Default 16.
	NShards int
	// Layout is the layout config of new generations.
	Layout LayoutConfig
	// BufferMaxItems flushes a shard buffer at this many messages. Default 1000.
	BufferMaxItems int
	// BufferMaxBytes flushes a shard buffer at this many bytes. Default 4 MiB.
	BufferMaxBytes int
	// FlushInterval is the longest a buffered message waits while a commit of
	// its shard is in flight. Default 1ms.
	FlushInterval time.Duration
	// MaxInflightCommits bounds the commits of one shard waiting for their
	// fsync at once. Default 4.
	MaxInflightCommits int
	// RetentionPeriod drives generation rotation and drop. 0 (the zero
	// value, left alone by EnsureDefaults) turns both off: the library keeps
	// every message. Negative is invalid. dsd passes the config key
	// durable_sessions.message_retention_period, whose default is 1d.
	RetentionPeriod time.Duration
	// MaxClockSkew: while the wall clock is this far behind a shard's
	// persisted clock, that shard's idle ticks are suspended. Default 1m.
	MaxClockSkew time.Duration
	// IdleTickInterval is how often an idle shard checks whether to tick
	// (advance its clock so the last epoch becomes readable) and whether
	// retention has work. Default 100ms.
	IdleTickInterval time.Duration
	// MaxMessageBytes bounds one message (topic + payload + properties).
	// Default 1 MiB + 64 KiB.
	MaxMessageBytes int
	// UnsafeNoSync commits without fsync. Acked messages can be lost on a
	// crash; it exists only so that crash tests can prove they detect loss.
	// Off by default; logged at Open when on.
	UnsafeNoSync bool
	// Logger receives engine and Pebble logs. Default: discard.
	Logger *slog.Logger
	// Now is the wall clock. Default time.Now. Tests inject a fake.
	Now func() time.Time
	// PebbleCacheBytes is the Pebble block cache size. Default 64 MiB.
	PebbleCacheBytes int64
	// TailCacheBytes bounds the tail cache: the most recent messages of the
	// wildcard_optimized_v2 streams, kept in memory so that readers at the
	// live end read no Pebble (tailcache.go). Default 64 MiB; negative turns
	// it off.
	TailCacheBytes int
	// SessionGCInterval is how often each shard deletes the sessions whose
	// expiry passed (durable_sessions.session_gc_interval). Default 10m.
	SessionGCInterval time.Duration

	// MinFreeBytes is the free-space watermark of the data dir's filesystem
	// (durable_storage.messages.min_free_bytes): below it the engine refuses
	// writes with ErrDiskFull, and it accepts them again once free space is
	// back above MinFreeBytes + 25% (at least + 1 MiB). Default 256 MiB;
	// negative turns the watermark off (an ENOSPC still makes the engine
	// refuse writes until space returns). See diskspace.go.
	MinFreeBytes int64
	// DiskCheckInterval is how often free space is read (statfs). Writes
	// only read a cached flag. Default 1s.
	DiskCheckInterval time.Duration
	// EmergencyBallastBytes is the size of the file
	// "EMERGENCY-BALLAST" that Open creates in the data dir (when FS is the
	// OS filesystem) and that the engine deletes the first time a write of
	// Pebble meets ENOSPC, so that the WAL and MANIFEST writes in flight
	// find room instead of failing (Pebble treats those failures as fatal).
	// Default 64 MiB; negative turns it off.
	EmergencyBallastBytes int64
	// CloseTimeout bounds how long Close waits for the engine's goroutines.
	// A commit that Pebble stalls for good (its flushes fail on a full disk)
	// would otherwise keep Close, and so dsd's SIGTERM, waiting forever;
	// past the timeout Close leaves Pebble unclosed and returns
	// ErrLeftUnclosed (what was acknowledged is synced, so this is no worse
	// than a crash). Default 5s.
	CloseTimeout time.Duration
	// FreeSpace reads the free bytes of the filesystem holding dir. Nil
	// means FS.GetDiskUsage (statfs for the OS filesystem; in-memory
	// filesystems have none, and the watermark is then off). Tests inject
	// a fake.
	FreeSpace func(dir string) (uint64, error)
}

// DefaultLayout returns the default layout config.
func DefaultLayout() LayoutConfig {
	return LayoutConfig{Type: LayoutWildcardOptimizedV2, BitsPerTopicLevel: 64, EpochBits: 20, TopicIndexBytes: 4, WildcardThresholds: []int{100, 20}, MaxTrieStates: 100000}
}

// EnsureDefaults fills every unset field with its default.
func (o *Options) EnsureDefaults() {
	if o.NShards == 0 {
		o.NShards = 16
	}
	d := DefaultLayout()
	if o.Layout.Type == "" {
		o.Layout.Type = d.Type
	}
	if o.Layout.BitsPerTopicLevel == 0 {
		o.Layout.BitsPerTopicLevel = d.BitsPerTopicLevel
	}
	if o.Layout.EpochBits == 0 {
		o.Layout.EpochBits = d.EpochBits
	}
	if o.Layout.TopicIndexBytes == 0 {
		o.Layout.TopicIndexBytes = d.TopicIndexBytes
	}
	if len(o.Layout.WildcardThresholds) == 0 {
		o.Layout.WildcardThresholds = d.WildcardThresholds
	}
	if o.Layout.MaxTrieStates == 0 {
		o.Layout.MaxTrieStates = d.MaxTrieStates
	}
	if o.BufferMaxItems == 0 {
		o.BufferMaxItems = 1000
	}
	if o.BufferMaxBytes == 0 {
		o.BufferMaxBytes = 4 << 20
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = time.Millisecond
	}
	if o.MaxInflightCommits == 0 {
		o.MaxInflightCommits = 4
	}
	if o.MaxClockSkew == 0 {
		o.MaxClockSkew = time.Minute
	}
	if o.IdleTickInterval == 0 {
		o.IdleTickInterval = 100 * time.Millisecond
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = 1<<20 + 64<<10
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PebbleCacheBytes == 0 {
		o.PebbleCacheBytes = 64 << 20
	}
	if o.TailCacheBytes == 0 {
		o.TailCacheBytes = 64 << 20
	}
	if o.SessionGCInterval == 0 {
		o.SessionGCInterval = 10 * time.Minute
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = DefaultMinFreeBytes
	}
	if o.DiskCheckInterval == 0 {
		o.DiskCheckInterval = time.Second
	}
	if o.EmergencyBallastBytes == 0 {
		o.EmergencyBallastBytes = DefaultEmergencyBallastBytes
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 5 * time.Second
	}
}

// Clone returns a copy that shares nothing mutable with o.
func (o Options) Clone() Options {
	o.Layout.WildcardThresholds = slices.Clone(o.Layout.WildcardThresholds)
	return o
}

// Validate reports every invalid field, joined into one error. Call it
// after EnsureDefaults.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...))
	}
	if o.DataDir == "" {
		bad("options: DataDir is required")
	}
	if o.NShards < 1 || o.NShards > MaxShards {
		bad("options: NShards %d outside 1..%d", o.NShards, MaxShards)
	}
	if err := o.Layout.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.BufferMaxItems < 1 {
		bad("options: BufferMaxItems %d < 1", o.BufferMaxItems)
	}
	if o.BufferMaxBytes < 1 {
		bad("options: BufferMaxBytes %d < 1", o.BufferMaxBytes)
	}
	if o.FlushInterval <= 0 {
		bad("options: FlushInterval %v <= 0", o.FlushInterval)
	}
	if o.MaxInflightCommits < 1 {
		bad("options: MaxInflightCommits %d < 1", o.MaxInflightCommits)
	}
	if o.RetentionPeriod < 0 {
		bad("options: RetentionPeriod %v < 0", o.RetentionPeriod)
	}
	if o.MaxClockSkew < 0 {
		bad("options: MaxClockSkew %v < 0", o.MaxClockSkew)
	}
	if o.IdleTickInterval <= 0 {
		bad("options: IdleTickInterval %v <= 0", o.IdleTickInterval)
	}
	if o.MaxMessageBytes < 1 {
		bad("options: MaxMessageBytes %d < 1", o.MaxMessageBytes)
	}
	if o.SessionGCInterval <= 0 {
		bad("options: SessionGCInterval %v <= 0", o.SessionGCInterval)
	}
	if o.DiskCheckInterval <= 0 {
		bad("options: DiskCheckInterval %v <= 0", o.DiskCheckInterval)
	}
	if o.CloseTimeout <= 0 {
		bad("options: CloseTimeout %v <= 0", o.CloseTimeout)
	}
	return errors.Join(errs...)
}

// Defaults of the disk-full protection (diskspace.go).
const (
	DefaultMinFreeBytes          = 256 << 20
	DefaultEmergencyBallastBytes = 64 << 20
)

// Names of the layout types, for LayoutConfig.Type.
const (
	LayoutWildcardOptimized   = layoutWildcardOptimized
	LayoutWildcardOptimizedV2 = layoutWildcardOptimizedV2
)

// Validate checks the layout config: a known type, and the rules of
// lts.Config.
func (l LayoutConfig) Validate() error {
	if l.Type != LayoutWildcardOptimized && l.Type != LayoutWildcardOptimizedV2 {
		return fmt.Errorf("%w: layout: type %q: want %q or %q", ErrInvalidArgument, l.Type, LayoutWildcardOptimized, LayoutWildcardOptimizedV2)
	}
	if err := l.ltsConfig().Validate(); err != nil {
		return fmt.Errorf("%w: layout: %w", ErrInvalidArgument, err)
	}
	return nil
}

func (l LayoutConfig) ltsConfig() lts.Config {
	return lts.Config{
		BitsPerTopicLevel:  l.BitsPerTopicLevel,
		EpochBits:          l.EpochBits,
		TopicIndexBytes:    l.TopicIndexBytes,
		WildcardThresholds: slices.Clone(l.WildcardThresholds),
		MaxTrieStates:      l.MaxTrieStates,
	}
}

// String prints the effective options, one field a line.
func (o Options) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir=%s n_shards=%d layout=%+v\n", o.DataDir, o.NShards, o.Layout)
	fmt.Fprintf(&b, "buffer_max_items=%d buffer_max_bytes=%d flush_interval=%v max_inflight_commits=%d\n",
		o.BufferMaxItems, o.BufferMaxBytes, o.FlushInterval, o.MaxInflightCommits)
	fmt.Fprintf(&b, "retention_period=%v max_clock_skew=%v idle_tick_interval=%v max_message_bytes=%d unsafe_no_sync=%v",
		o.RetentionPeriod, o.MaxClockSkew, o.IdleTickInterval, o.MaxMessageBytes, o.UnsafeNoSync)
	fmt.Fprintf(&b, "\nsession_gc_interval=%v", o.SessionGCInterval)
	fmt.Fprintf(&b, "\nmin_free_bytes=%d disk_check_interval=%v emergency_ballast_bytes=%d close_timeout=%v",
		o.MinFreeBytes, o.DiskCheckInterval, o.EmergencyBallastBytes, o.CloseTimeout)
	return b.String()
}
