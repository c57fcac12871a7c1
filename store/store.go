// Package store keeps rolloutbot's state: the inventory, rollouts and their
// per-host results, pinned host keys, schedules and the audit log. It runs on
// PostgreSQL (through pgx) for production and on an embedded SQLite file (a
// pure-Go driver, no cgo) when no DATABASE_URL is given. Both run the same SQL
// and pass the same contract tests; only this package imports a database driver.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// DB is the store on either backend.
type DB struct {
	b   backend
	log *slog.Logger
	id  string // the store's name, made by its migrations
}

var _ rollout.Store = (*DB)(nil)
var _ rollout.Inventory = (*DB)(nil)
var _ rollout.FreezeStore = (*DB)(nil)

// backend is what differs between PostgreSQL and SQLite.
type backend interface {
	querier
	begin(ctx context.Context) (tx, error)
	close()
	kind() string
	isUniqueViolation(err error) bool
	// now is the SQL for the database's clock, comparable with time columns.
	now() string
	// after is the SQL for the database's clock plus the microseconds in param.
	after(param string) string
	// insertRolloutHosts writes a new rollout's host snapshot.
	insertRolloutHosts(ctx context.Context, t tx, rolloutID int64, hosts []rollout.Host) error
	// saveResults writes host results, only while owner holds the rollout,
	// and reports whether it did.
	saveResults(ctx context.Context, owner string, results []rollout.HostResult) (bool, error)
}

type querier interface {
	exec(ctx context.Context, query string, args ...any) (int64, error)
	query(ctx context.Context, query string, args ...any) (rows, error)
	queryRow(ctx context.Context, query string, args ...any) row
}

type tx interface {
	querier
	commit(ctx context.Context) error
	rollback(ctx context.Context)
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// row scans one row; Scan returns rollout.ErrNotFound when there was none.
type row interface {
	Scan(dest ...any) error
}

// Open connects to the store dsn names and applies pending migrations:
// postgres:// or postgresql:// for PostgreSQL, sqlite:PATH (or a bare path)
// for the embedded store. Errors name the store without its password.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*DB, error) {
	return open(ctx, dsn, log, -1)
}

// open is Open with the migrations applied up to version upTo (-1: all).
func open(ctx context.Context, dsn string, log *slog.Logger, upTo int) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var b backend
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		b, err = openPostgres(ctx, dsn)
	case dsn == "":
		return nil, errors.New("open store: no database given")
	default:
		b, err = openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"))
	}
	if err != nil {
		return nil, openError("open store %s: %w", dsn, err)
	}
	db := &DB{b: b, log: log}
	if err := db.migrate(ctx, upTo); err != nil {
		b.close()
		return nil, openError("migrate store %s: %w", dsn, err)
	}
	if upTo < 0 || upTo >= 3 {
		if err := b.queryRow(ctx, `SELECT id FROM store_info`).Scan(&db.id); err != nil {
			b.close()
			return nil, openError("read the name of store %s: %w", dsn, err)
		}
	}
	return db, nil
}

// openError words a failed Open: a store that cannot write is named in its
// StorageError, which then says it all ("open store /x.db: the disk is full").
func openError(format, dsn string, err error) error {
	if se := (*StorageError)(nil); errors.As(err, &se) {
		return fmt.Errorf("open %w", se)
	}
	return fmt.Errorf(format, Redact(dsn), err)
}

// Redact returns dsn with any password replaced, for messages and logs: in
// the URL's user part, in a password= query parameter, or in a keyword/value
// connection string.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		dsn = passwordURL.ReplaceAllString(dsn, "${1}xxxxx@")
		return passwordKV.ReplaceAllString(dsn, "${1}xxxxx")
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// passwordURL finds the password of a URL that does not parse.
var passwordURL = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)

// passwordKV finds the password of a keyword/value connection string.
var passwordKV = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// ID is the store's own name, made once when it was set up: host commands'
// fences are compared only with fences of the same store.
func (db *DB) ID() string { return db.id }

// Close releases the connections.
func (db *DB) Close() { db.b.close() }

// Kind is "postgres" or "sqlite".
func (db *DB) Kind() string { return db.b.kind() }

// Ping checks that the store answers, for /healthz.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.b.queryRow(ctx, "SELECT 1").Scan(&one)
}

// withTx runs f in a transaction, committing when it returns nil.
func (db *DB) withTx(ctx context.Context, f func(tx) error) error {
	t, err := db.b.begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := f(t); err != nil {
		t.rollback(ctx)
		return err
	}
	if err := t.commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// nullTime maps the zero time to NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

func timeOf(nt sql.NullTime) time.Time {
	if !nt.Valid {
		return time.Time{}
	}
	return nt.Time
}

func formatStages(ps []int) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

func parseStages(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("stages %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}
