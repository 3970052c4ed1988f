package storage

// Ready returns nil while the DB accepts writes: it is open and no commit has
// failed. It backs dsd's /readyz.
func (db *DB) Ready() error {
	if db.closing.Load() {
		return ErrClosed
	}
	return db.failErr()
}
