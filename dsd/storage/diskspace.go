package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// Disk-full protection (docs/durability.md, "When the disk fills").
//
// Pebble does not survive a full disk well: a failed WAL or MANIFEST write
// or sync is fatal to it (Logger.Fatalf, or a panic in the commit path),
// and a memtable flush that keeps failing stalls every later commit for
// good. So the engine stops writing before the disk is full:
//
//   - diskSpace reads the filesystem's free space every DiskCheckInterval
//     and refuses writes (ErrDiskFull) below MinFreeBytes, by an atomic
//     flag that writes read (never a syscall per write); writes resume
//     once free space is back above the resume mark.
//   - Pebble's FS is wrapped with vfs.OnDiskFull: the first write that
//     meets ENOSPC raises the flag at once and deletes the emergency
//     ballast, and Pebble retries that write once, into the freed room.
//     Syncs are never retried (a sync after a failed one proves nothing).
//   - What still fails is fail-stop (engine.go): the engine refuses writes
//     until it is reopened and keeps serving what is committed.

// ballastName is the emergency ballast file in the data dir.
const ballastName = "EMERGENCY-BALLAST"

// diskSpace is the free-space watermark of one DB. Its goroutine (run) is
// owned by the DB.
type diskSpace struct {
	dir string
	// min is the watermark (0: off); resume the mark at which writes
	// resume.
	min, resume uint64
	// read returns the free bytes of dir's filesystem; nil when the FS has
	// no such figure (then only an ENOSPC raises the flag, and only a
	// reopen lowers it).
	read func(dir string) (uint64, error)
	log  *slog.Logger
	// ballast is the path of the emergency ballast and its size (0: none).
	ballast     string
	ballastSize atomic.Int64

	// free is the last reading, -1 before the first.
	free atomic.Int64
	// low: writes are refused (reason disk_watermark).
	low atomic.Bool
	// refused counts the writes refused, per reason.
	refusedWatermark, refusedFailed atomic.Int64
	// poke asks run for a reading now (after an ENOSPC).
	poke chan struct{}

	mu struct {
		sync.Mutex
		// lowCh is closed while low: waiters for a write's reply give up
		// when the disk fills (shard.doUntil).
		lowCh chan struct{}
		// readErr is the last reading error logged (logged once).
		readErr string
	}
}

func newDiskSpace(opts Options, log *slog.Logger) *diskSpace {
	d := &diskSpace{dir: opts.DataDir, log: log, poke: make(chan struct{}, 1)}
	d.free.Store(-1)
	d.mu.lowCh = make(chan struct{})
	if opts.MinFreeBytes > 0 {
		d.min = uint64(opts.MinFreeBytes)
	}
	d.resume = d.min + max(d.min/4, 1<<20)
	switch {
	case opts.FreeSpace != nil:
		d.read = opts.FreeSpace
	default:
		fs := opts.FS
		if _, err := fs.GetDiskUsage(opts.DataDir); err == nil {
			d.read = func(dir string) (uint64, error) {
				u, err := fs.GetDiskUsage(dir)
				return u.AvailBytes, err
			}
		}
	}
	if opts.EmergencyBallastBytes > 0 && opts.FS == vfs.Default {
		d.ballast = filepath.Join(opts.DataDir, ballastName)
		d.ballastSize.Store(opts.EmergencyBallastBytes)
	}
	return d
}

// wrapFS wraps Pebble's FS so that the first write meeting ENOSPC raises
// the flag and frees the ballast before Pebble's retry.
func (d *diskSpace) wrapFS(fs vfs.FS) vfs.FS {
	return vfs.OnDiskFull(fs, d.onDiskFull)
}

// onDiskFull runs while every new write of Pebble waits, so it only
// deletes a file and sets a flag.
func (d *diskSpace) onDiskFull() {
	removed := d.removeBallast()
	// Pebble retries a failing flush many times a second: log the change
	// only.
	if d.setLow(true) || removed {
		d.log.Error("a write met ENOSPC: refusing writes until free space returns",
			"data_dir", d.dir, "ballast_removed", removed)
	}
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// run reads the free space every interval (and when poked) until ctx ends.
func (d *diskSpace) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.poke:
		}
		d.check()
	}
}

// check takes one reading and moves the flag across the watermark.
func (d *diskSpace) check() {
	if d.read == nil {
		return
	}
	free, err := d.read(d.dir)
	if err != nil {
		d.mu.Lock()
		first := d.mu.readErr != err.Error()
		d.mu.readErr = err.Error()
		d.mu.Unlock()
		if first {
			d.log.Warn("cannot read the free space of the data dir; the flag keeps its state", "data_dir", d.dir, "err", err)
		}
		return
	}
	d.free.Store(int64(min(free, math.MaxInt64)))
	low := d.low.Load()
	switch {
	case !low && free < d.min:
		d.setLow(true)
		d.log.Error("free space under the watermark: refusing writes until it is back above the resume mark",
			"data_dir", d.dir, "free_bytes", free, "min_free_bytes", d.min, "resume_bytes", d.resume)
	case low && free >= d.resume:
		d.setLow(false)
		d.log.Warn("free space back above the resume mark: accepting writes", "data_dir", d.dir, "free_bytes", free, "resume_bytes", d.resume)
	}
	if size := d.ballastSize.Load(); size > 0 && !d.low.Load() && free >= d.resume+uint64(size) {
		d.createBallast()
	}
}

// setLow sets the flag and reports whether it changed.
func (d *diskSpace) setLow(v bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.low.Load() == v {
		return false
	}
	d.low.Store(v)
	if v {
		close(d.mu.lowCh)
	} else {
		d.mu.lowCh = make(chan struct{})
	}
	return true
}

// lowChan is closed once writes are refused for lack of space.
func (d *diskSpace) lowChan() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.lowCh
}

// refusal is the error of a write refused for lack of space, or nil.
func (d *diskSpace) refusal() error {
	if !d.low.Load() {
		return nil
	}
	if free := d.free.Load(); free >= 0 && uint64(free) < d.min {
		return fmt.Errorf("%w: %d bytes free under the watermark %d on %s", ErrDiskFull, free, d.min, d.dir)
	}
	// Raised by an ENOSPC before a reading showed it (or without one).
	return fmt.Errorf("%w: a write met ENOSPC on %s", ErrDiskFull, d.dir)
}

// createBallast creates the emergency ballast if it is missing. It
// allocates the blocks (fallocate) rather than writing them.
func (d *diskSpace) createBallast() {
	size := d.ballastSize.Load()
	if fi, err := os.Stat(d.ballast); err == nil && fi.Size() == size {
		return
	}
	f, err := os.OpenFile(d.ballast, os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		err = unix.Fallocate(int(f.Fd()), 0, 0, size)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		_ = os.Remove(d.ballast)
		d.log.Warn("cannot create the emergency ballast; continuing without it", "path", d.ballast, "bytes", size, "err", err)
		d.ballastSize.Store(0) // do not try again on every reading
		return
	}
	d.log.Info("emergency ballast in place", "path", d.ballast, "bytes", size)
}

func (d *diskSpace) removeBallast() bool {
	if d.ballastSize.Load() == 0 {
		return false
	}
	return os.Remove(d.ballast) == nil
}

// isNoSpace reports whether err is the filesystem saying it is full (or a
// quota is).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// writeRefusal is the admission check of a write that makes the data grow
// (Store, OpenSession, CommitSession, a retained update): the fail-stop
// error, else ErrDiskFull while free space is under the watermark, else
// nil. It reads two atomics.
func (db *DB) writeRefusal() error {
	if err := db.failErr(); err != nil {
		db.space.refusedFailed.Add(1)
		return err
	}
	if err := db.space.refusal(); err != nil {
		db.space.refusedWatermark.Add(1)
		return err
	}
	return nil
}

// doWrite is shard.do for a write that writeRefusal admitted: when the
// disk fills while it waits (its commit may be stalled in Pebble, whose
// flushes fail), it answers ErrDiskFull rather than waiting for ctx. The
// request may still be applied then, as after a cancelled ctx.
func (s *shard) doWrite(ctx context.Context, r *request) (reply, error) {
	sp := s.db.space
	return s.doUntil(ctx, r, sp.lowChan(), sp.gaveUp)
}

// gaveUp is the error of a write that stopped waiting because lowChan
// closed.
func (d *diskSpace) gaveUp() error {
	if err := d.refusal(); err != nil {
		return err
	}
	// Not low any more, but that was the reason.
	return fmt.Errorf("%w: on %s", ErrDiskFull, d.dir)
}

// startDiskSpace takes the first reading, puts the ballast in place and
// starts the watcher; Close stops it (db.ctx, db.wg).
func (db *DB) startDiskSpace() {
	db.space.check()
	db.wg.Add(1)
	go func() {
		defer db.wg.Done()
		db.space.run(db.ctx, db.opts.DiskCheckInterval)
	}()
}

// DiskStatus is the engine's disk-full state, for metrics.
type DiskStatus struct {
	// FreeBytes is the last reading of the data dir's free space; -1 when
	// there is none (an in-memory filesystem, or statfs failing).
	FreeBytes int64
	// MinFreeBytes is the watermark (0: off).
	MinFreeBytes uint64
	// Watermark: writes are refused because free space is under the
	// watermark (or a write met ENOSPC and space has not returned).
	Watermark bool
	// WriteFailed: writes are refused because a commit failed (fail-stop,
	// until the engine is reopened).
	WriteFailed bool
	// RefusedWatermark and RefusedWriteFailed count the writes refused at
	// admission, per reason, since Open.
	RefusedWatermark, RefusedWriteFailed int64
}

// DiskStatus reads the disk-full state (atomics only).
func (db *DB) DiskStatus() DiskStatus {
	return DiskStatus{
		FreeBytes:          db.space.free.Load(),
		MinFreeBytes:       db.space.min,
		Watermark:          db.space.low.Load(),
		WriteFailed:        db.failed.Load() != nil,
		RefusedWatermark:   db.space.refusedWatermark.Load(),
		RefusedWriteFailed: db.space.refusedFailed.Load(),
	}
}

// closeBounded waits, for at most Options.CloseTimeout, for the engine's
// goroutines to end. A shard writer whose commit Pebble stalls for good
// (its flushes fail on a full disk), or a goroutine parked by a disk-full
// Fatalf, would otherwise keep Close, and so dsd's SIGTERM, waiting
// forever. In those cases it returns ErrLeftUnclosed and the caller leaves
// Pebble unclosed and the data dir locked: every acknowledged write is
// synced, so exiting now is no worse than a crash, which Open recovers
// from.
func (db *DB) closeBounded() error {
	done := make(chan struct{})
	go func() {
		db.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(db.opts.CloseTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		db.notify.close()
		db.log.Error("close: writes still stuck in pebble; leaving it unclosed (nothing acknowledged is lost)", "waited", db.opts.CloseTimeout)
		return fmt.Errorf("%w: writes still stuck in pebble after %v (is the disk full?)", ErrLeftUnclosed, db.opts.CloseTimeout)
	}
	if db.pebbleBroken.Load() {
		db.notify.close()
		db.log.Error("close: pebble met a full disk where it cannot go on; leaving it unclosed (nothing acknowledged is lost)")
		return fmt.Errorf("%w: pebble met a full disk", ErrLeftUnclosed)
	}
	return nil
}
