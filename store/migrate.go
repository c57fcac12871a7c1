package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations
var migrationFiles embed.FS

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the backend's migrations in order.
func (db *DB) Migrations() ([]Migration, error) {
	dir := path.Join("migrations", db.b.kind())
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(migrationFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(e.Name(), ".sql"), SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Migrate applies the migrations not applied yet, each in its own
// transaction with its record, so two processes starting together apply
// each one once.
func (db *DB) Migrate(ctx context.Context) error { return db.migrate(ctx, -1) }

// migrate applies the migrations up to version upTo, or all when it is -1.
func (db *DB) migrate(ctx context.Context, upTo int) error {
	if _, err := db.b.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)`); err != nil &&
		!db.b.isUniqueViolation(err) { // PostgreSQL: a concurrent CREATE can trip the catalog's unique index
		return err
	}
	ms, err := db.Migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if upTo >= 0 && m.Version > upTo {
			break
		}
		err := db.withTx(ctx, func(t tx) error {
			if db.b.kind() == "postgres" {
				if _, err := t.exec(ctx, `SELECT pg_advisory_xact_lock(7248201)`); err != nil {
					return err
				}
			}
			var n int
			if err := t.queryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := t.exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := t.exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, time.Now().UTC())
			if err == nil {
				db.log.Info("applied migration", "migration", m.Name, "store", db.b.kind())
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// AppliedMigrations lists the versions recorded as applied.
func (db *DB) AppliedMigrations(ctx context.Context) ([]int, error) {
	rs, err := db.b.query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []int
	for rs.Next() {
		var v int
		if err := rs.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rs.Err()
}
