package store

import "context"

// OpenAt opens dsn with the migrations applied up to version only, so an
// upgrade can be tested from data written by an older schema.
func OpenAt(ctx context.Context, dsn string, version int) (*DB, error) {
	return open(ctx, dsn, nil, version)
}

// Exec runs raw SQL, for writing rows the way an older schema did.
func (db *DB) Exec(ctx context.Context, q string, args ...any) error {
	_, err := db.b.exec(ctx, q, args...)
	return err
}
