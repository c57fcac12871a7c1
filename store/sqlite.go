package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// sqliteDB is the embedded store: one file, WAL mode so readers never wait
// for the writer, write transactions taken up front (BEGIN IMMEDIATE) so two
// processes on one file queue on the busy timeout instead of deadlocking.
// Commits are synced to disk (synchronous=FULL): with NORMAL a commit in WAL
// mode is not, and a power loss could take back a host's "updating" record
// after its update had begun.
//
// SQLite lets one writer in at a time and has the others retry on the busy
// timeout, in no order: a steady stream of result batches could keep a lease
// renewal out for longer than the lease. So this process's writers take
// turns, first come first served (turn); the busy timeout only orders
// writers of different processes.
type sqliteDB struct {
	db   *sql.DB
	path string
	turn chan struct{} // held by the process's one writer

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // prepared once, for the statements every batch runs
}

func openSQLite(ctx context.Context, path string) (*sqliteDB, error) {
	if path == "" {
		return nil, errors.New("no file name")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
	}
	q := url.Values{}
	q.Set("_txlock", "immediate")
	q.Set("_busy_timeout", "10000")
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "1")
	q.Set("_time_integer_format", "unix_micro")
	q.Set("_inttotime", "1")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(8)
	s := &sqliteDB{db: db, path: path, stmts: map[string]*sql.Stmt{}, turn: make(chan struct{}, 1)}
	if err := s.probeWrite(ctx); err != nil {
		db.Close()
		return nil, s.describe(err)
	}
	return s, nil
}

// probeWrite writes to the file and takes it back. SQLite opens a file it
// may not write read-only, without an error, and the first write to fail
// would otherwise be a rollout's.
func (s *sqliteDB) probeWrite(ctx context.Context) error {
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback()
	_, err = t.ExecContext(ctx, `CREATE TABLE write_probe (x INTEGER)`)
	return err
}

func (s *sqliteDB) kind() string { return "sqlite" }

// describe names the file and the cause when the disk is full or the file
// cannot be written.
func (s *sqliteDB) describe(err error) error { return describeSQLite(s.path, err, statDisk) }

func (s *sqliteDB) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.db.Close()
}

// stmt returns q prepared, preparing it on first use: SQLite parses a
// statement each time it is prepared, which for the per-batch statements
// was about half of the store's CPU. A failed prepare is tried again next time.
func (s *sqliteDB) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[q]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	s.stmts[q] = st
	return st, nil
}

// write waits for this process's turn to write; the returned func ends it.
// Blocked writers are let in in the order they came.
func (s *sqliteDB) write(ctx context.Context) (func(), error) {
	select {
	case s.turn <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-s.turn }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// writes reports whether statement q may write: it then waits for its turn.
func writes(q string) bool {
	verb, _, _ := strings.Cut(strings.TrimSpace(q), " ")
	switch strings.ToUpper(verb) {
	case "SELECT", "PRAGMA":
		return false
	}
	return true
}

func (s *sqliteDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	done, err := s.write(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	n, err := sqlExec(s.db.ExecContext(ctx, q, args...))
	return n, s.describe(err)
}

func (s *sqliteDB) query(ctx context.Context, q string, args ...any) (rows, error) {
	rs, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.describe(err)
	}
	return sqlRows{rs}, nil
}

func (s *sqliteDB) queryRow(ctx context.Context, q string, args ...any) row {
	if !writes(q) {
		return sqlRow{r: s.db.QueryRowContext(ctx, q, args...), s: s}
	}
	done, err := s.write(ctx)
	if err != nil {
		return sqlRow{err: err, s: s}
	}
	return sqlRow{r: s.db.QueryRowContext(ctx, q, args...), s: s, done: done}
}

func (s *sqliteDB) begin(ctx context.Context) (tx, error) {
	done, err := s.write(ctx)
	if err != nil {
		return nil, err
	}
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		done()
		return nil, s.describe(err)
	}
	return sqlTx{t: t, s: s, done: done}, nil
}

// sqliteNow is SQLite's clock as the store keeps times: microseconds since
// the epoch. Every process on one SQLite file shares this machine's clock.
const sqliteNow = "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"

func (s *sqliteDB) now() string { return sqliteNow }
func (s *sqliteDB) after(param string) string {
	return "(" + sqliteNow + " + " + param + ")"
}

func (s *sqliteDB) isUniqueViolation(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

func (s *sqliteDB) insertRolloutHosts(ctx context.Context, t tx, id int64, hosts []rollout.Host) error {
	st, err := t.(sqlTx).t.PrepareContext(ctx, `INSERT INTO rollout_hosts
		(rollout_id, idx, host_id, address, port, ssh_user, label, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`)
	if err != nil {
		return s.describe(err)
	}
	defer st.Close()
	for i, h := range hosts {
		if _, err := st.ExecContext(ctx, id, i, h.ID, h.Address, h.SSHPort(), h.User, h.Label,
			string(rollout.StatusPending)); err != nil {
			return fmt.Errorf("host %s: %w", h.ID, s.describe(err))
		}
	}
	return nil
}

// saveResults writes the batch in one immediate transaction, which excludes
// any concurrent takeover for its duration.
func (s *sqliteDB) saveResults(ctx context.Context, owner string, results []rollout.HostResult) (bool, error) {
	ok, err := s.saveBatch(ctx, owner, results)
	return ok, s.describe(err)
}

func (s *sqliteDB) saveBatch(ctx context.Context, owner string, results []rollout.HostResult) (bool, error) {
	ownerOf, err := s.stmt(ctx, `SELECT owner FROM rollouts WHERE id = $1`)
	if err != nil {
		return false, err
	}
	update, err := s.stmt(ctx, updateResultSQL)
	if err != nil {
		return false, err
	}
	done, err := s.write(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer t.Rollback()
	var cur string
	if err := t.StmtContext(ctx, ownerOf).QueryRowContext(ctx, results[0].RolloutID).Scan(&cur); err != nil {
		return false, err
	}
	if cur != owner {
		return false, nil
	}
	st := t.StmtContext(ctx, update)
	for _, hr := range results {
		if _, err := st.ExecContext(ctx, resultArgs(hr)...); err != nil {
			return false, err
		}
	}
	return true, t.Commit()
}

func sqlExec(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

type sqlRow struct {
	r    *sql.Row
	err  error // the row was never asked for
	s    *sqliteDB
	done func() // ends the writer's turn, when it has one
}

func (r sqlRow) Scan(dest ...any) error {
	if r.done != nil {
		defer r.done()
	}
	if r.err != nil {
		return r.err
	}
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return rollout.ErrNotFound
	}
	return r.s.describe(err)
}

type sqlTx struct {
	t    *sql.Tx
	s    *sqliteDB
	done func() // ends the writer's turn
}

func (t sqlTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	n, err := sqlExec(t.t.ExecContext(ctx, q, args...))
	return n, t.s.describe(err)
}

func (t sqlTx) query(ctx context.Context, q string, args ...any) (rows, error) {
	rs, err := t.t.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, t.s.describe(err)
	}
	return sqlRows{rs}, nil
}

func (t sqlTx) queryRow(ctx context.Context, q string, args ...any) row {
	return sqlRow{r: t.t.QueryRowContext(ctx, q, args...), s: t.s}
}

func (t sqlTx) commit(context.Context) error {
	defer t.done()
	return t.s.describe(t.t.Commit())
}

func (t sqlTx) rollback(context.Context) {
	defer t.done()
	_ = t.t.Rollback()
}
