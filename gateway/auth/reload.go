package auth

import (
	"fmt"
	"os"

	"github.com/stratamq/strata/gateway/auth/passwd"
)

// Reload re-reads the password file now, whether or not it looks changed,
// and empties the credential caches. On error (missing or malformed file)
// the users loaded before stay in force and the error is returned (and kept
// for Stats). Without a configured password file it does nothing.
func (a *Authenticator) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.nextCheck.Store(a.now().Add(a.checkInterval).UnixNano())
	return a.reloadLocked(true)
}

// maybeReload checks the file at most once per check interval. Only one
// caller checks; the others go on with the users they have.
func (a *Authenticator) maybeReload() {
	if a.cfg.PasswordFile == "" {
		return
	}
	now := a.now()
	if now.UnixNano() < a.nextCheck.Load() {
		return
	}
	if !a.reloadMu.TryLock() {
		return
	}
	defer a.reloadMu.Unlock()
	if now.UnixNano() < a.nextCheck.Load() {
		return
	}
	a.nextCheck.Store(now.Add(a.checkInterval).UnixNano())
	_ = a.reloadLocked(false) // kept for Stats
}

// reloadLocked reads the file if force is set or if its identity (inode),
// size or modification time changed since the last read. Any change empties
// the caches, even when the new file does not parse (the old users stay).
func (a *Authenticator) reloadLocked(force bool) error {
	path := a.cfg.PasswordFile
	if path == "" {
		return nil
	}
	old := a.table.Load()
	info, err := os.Stat(path)
	if err != nil {
		return a.fail(fmt.Errorf("auth: password file: %w", err))
	}
	if !force && sameFile(old.info, info) {
		return nil
	}
	// Stat before read: if the file changes in between, the next check sees
	// a newer stat than the one recorded here and reads it again.
	t := &userTable{gen: old.gen + 1, file: old.file, info: info}
	f, err := passwd.ReadFile(path)
	if err == nil {
		t.file = f
	}
	a.table.Store(t)
	a.good.reset(t.gen)
	a.bad.reset(t.gen)
	if err != nil {
		return a.fail(fmt.Errorf("auth: password file not reloaded, keeping %d users: %w", old.file.Len(), err))
	}
	a.reloads.Add(1)
	a.lastErr.Store(nil)
	return nil
}

func (a *Authenticator) fail(err error) error {
	a.lastErr.Store(&errorBox{err})
	return err
}

// sameFile reports whether b is the same file as a, unchanged: same inode
// (mqttpasswd replaces the file by rename), size and modification time.
func sameFile(a, b os.FileInfo) bool {
	return a != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// Stats are counters for the gateway's metrics and logs.
type Stats struct {
	// Users is the number of users in the password file in force.
	Users int
	// Reloads counts successful reads of a changed file (and Reload calls).
	Reloads int64
	// LastReloadError is the error of the last check or reload, nil after a good one.
	LastReloadError error
	// CacheHits and CacheMisses count password checks answered from the
	// cache or not; Verifications counts hash computations; Shared counts
	// checks that waited for another caller's computation of the same
	// credentials.
	CacheHits, CacheMisses, Verifications, Shared int64
	// CachedGood and CachedBad are the entries in the two caches.
	CachedGood, CachedBad int
	// Limited counts requests refused by the failure limits; LimitedKeys
	// is the addresses and user names with recent failures remembered.
	Limited     int64
	LimitedKeys int
}

// Stats returns the current counters.
func (a *Authenticator) Stats() Stats {
	s := Stats{
		Reloads:       a.reloads.Load(),
		CacheHits:     a.cacheHits.Load(),
		CacheMisses:   a.cacheMisses.Load(),
		Verifications: a.verifications.Load(),
		Shared:        a.shared.Load(),
		CachedGood:    a.good.len(),
		CachedBad:     a.bad.len(),
		Limited:       a.limited.Load(),
		LimitedKeys:   a.byAddr.len() + a.byUser.len(),
	}
	if f := a.table.Load().file; f != nil {
		s.Users = f.Len()
	}
	if b := a.lastErr.Load(); b != nil {
		s.LastReloadError = b.err
	}
	return s
}
