package storage

// Ready returns nil while the DB accepts writes: it is open, no commit has
// failed and free space is not under the watermark (ErrDiskFull). It backs
// dsd's /readyz.
func (db *DB) Ready() error {
	if db.closing.Load() {
		return ErrClosed
	}
	if err := db.failErr(); err != nil {
		return err
	}
	return db.space.refusal()
}
