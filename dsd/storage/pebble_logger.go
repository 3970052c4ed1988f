package storage

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleLogger sends Pebble's logs to slog.
//
// Fatalf: Pebble calls it for broken invariants and for I/O errors it
// cannot unwind, and its call sites assume it does not return. The
// MANIFEST writer (versionSet.UpdateVersionLocked) calls it after a failed
// MANIFEST write or sync, still holding the MANIFEST lock and DB.mu; were
// it to return, a later flush could append an edit after a torn one. So:
//
//   - an invariant violation (anything but a full disk) panics, and dsd's
//     storage path does not recover (STYLE.md rule 9): crash and restart;
//   - a full disk (an ENOSPC or EDQUOT among the arguments) fail-stops the
//     engine (ErrDiskFull, reason write_failed), marks Pebble broken (Close
//     then leaves it unclosed, EngineMetrics stops asking it) and parks the
//     calling goroutine for good, holding Pebble's locks, so that nothing
//     more reaches the MANIFEST or the WAL. dsd stays up, refuses writes,
//     serves the reads that need none of those locks (iterators over the
//     current read state), and exits on SIGTERM; the restart recovers from
//     the WAL and MANIFEST as after a crash, once space is freed. The
//     watermark and the emergency ballast (diskspace.go) exist so that this
//     path is not taken.
type pebbleLogger struct {
	l *slog.Logger
	// db is fail-stopped by a disk-full Fatalf; nil panics on every Fatalf.
	db *DB
}

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg)
	if p.db != nil && noSpaceArg(args) {
		p.db.pebbleFatal(msg)
		<-p.db.fatalPark // nil outside tests: parks for good
		return
	}
	// Invariant: pebble calls Fatalf only when it cannot go on safely (a
	// failed sync, corruption it cannot repair), and Fatalf must not return.
	// dsd does not recover in the storage path: it crashes and restarts
	// (STYLE.md rule 9), and recovery replays the WAL.
	panic("storage: pebble fatal: " + msg)
}

// noSpaceArg reports whether one of a Fatalf's arguments is a disk-full
// error.
func noSpaceArg(args []any) bool {
	for _, a := range args {
		if err, ok := a.(error); ok && isNoSpace(err) {
			return true
		}
	}
	return false
}

// pebbleFatal records a disk-full Fatalf of Pebble: fail-stop, and Pebble
// is no longer closed nor asked for metrics.
func (db *DB) pebbleFatal(msg string) {
	db.pebbleBroken.Store(true)
	db.failStop(fmt.Errorf("%w: pebble: %s", ErrDiskFull, msg))
	db.log.Error("pebble met a full disk where it cannot recover: writes are refused, reads go on; restart dsd once space is freed (nothing acknowledged is lost)")
}

// pebbleEvents is Pebble's default event listener (background errors
// logged, the rest filled in by Pebble's EnsureDefaults), with the
// background errors of a full disk (a flush or compaction that cannot
// write its tables, which Pebble retries many times a second) logged at
// most once per noSpaceLogInterval.
func pebbleEvents(log pebbleLogger) *pebble.EventListener {
	var last atomic.Int64 // unix nanoseconds of the last ENOSPC logged
	var suppressed atomic.Int64
	return &pebble.EventListener{BackgroundError: func(err error) {
		if isNoSpace(err) {
			now := time.Now().UnixNano()
			prev := last.Load()
			if now-prev < int64(noSpaceLogInterval) || !last.CompareAndSwap(prev, now) {
				suppressed.Add(1)
				return
			}
			err = fmt.Errorf("%w (%d more like it since the last report)", err, suppressed.Swap(0))
		}
		log.Errorf("background error: %s", err)
	}}
}

// noSpaceLogInterval spaces the logs of Pebble's disk-full background
// errors.
const noSpaceLogInterval = 10 * time.Second
