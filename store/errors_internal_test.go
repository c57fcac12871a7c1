package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	sqlite3 "modernc.org/sqlite/lib"
)

// The words for each SQLite code a store that cannot write gives, with what
// the file system says; codes that are not about the disk get none.
func TestSQLiteReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
		disk disk
		want string
		kind error
	}{
		{"full", sqlite3.SQLITE_FULL, disk{}, "the disk is full", ErrDiskFull},
		{"read-only", sqlite3.SQLITE_READONLY, disk{}, "the file is read-only (check the file's and its directory's owner and permissions)", ErrReadOnly},
		{"read-only, no -shm", sqlite3.SQLITE_READONLY_CANTINIT, disk{}, "the file is read-only", ErrReadOnly},
		{"read-only mount", sqlite3.SQLITE_READONLY, disk{readOnly: true}, "the file system it is on is mounted read-only", ErrReadOnly},
		{"directory read-only", sqlite3.SQLITE_READONLY_DIRECTORY, disk{}, "its directory is read-only", ErrReadOnly},
		{"moved", sqlite3.SQLITE_READONLY_DBMOVED, disk{}, "moved or deleted while open", ErrReadOnly},
		{"shm on a full disk", sqlite3.SQLITE_IOERR_SHMSIZE, disk{full: true}, "the disk is full", ErrDiskFull},
		{"write on a full disk", sqlite3.SQLITE_IOERR_WRITE, disk{full: true}, "the disk is full", ErrDiskFull},
		{"no inodes", sqlite3.SQLITE_IOERR_WRITE, disk{noInodes: true}, "the disk is full (no free inodes)", ErrDiskFull},
		{"write on a read-only mount", sqlite3.SQLITE_IOERR_WRITE, disk{readOnly: true}, "mounted read-only", ErrReadOnly},
		{"fsync failed", sqlite3.SQLITE_IOERR_FSYNC, disk{}, "writing to the disk failed", nil},
		{"read failed", sqlite3.SQLITE_IOERR_READ, disk{}, "reading the file failed", nil},
		{"cannot open", sqlite3.SQLITE_CANTOPEN, disk{}, "cannot be opened or created", nil},
		{"cannot create the WAL on a full disk", sqlite3.SQLITE_CANTOPEN, disk{noInodes: true}, "no free inodes", ErrDiskFull},
		{"busy", sqlite3.SQLITE_BUSY, disk{full: true}, "", nil},
		{"constraint", sqlite3.SQLITE_CONSTRAINT_UNIQUE, disk{}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, kind := sqliteReason(tc.code, func() disk { return tc.disk })
			if tc.want == "" && reason != "" || !strings.Contains(reason, tc.want) || kind != tc.kind {
				t.Errorf("sqliteReason(%d, %+v) = %q, %v; want %q, %v", tc.code, tc.disk, reason, kind, tc.want, tc.kind)
			}
		})
	}
}

// A real SQLITE_FULL (the page limit reached) becomes a StorageError naming
// the file; other SQLite errors, and errors described already, stay as they are.
func TestDescribeSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "full.db")
	db, err := sql.Open("sqlite", path+"?_pragma=max_page_count(8)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (x TEXT)`); err != nil {
		t.Fatal(err)
	}
	var full error
	for i := 0; full == nil && i < 100; i++ {
		_, full = db.ExecContext(ctx, `INSERT INTO t VALUES (?)`, strings.Repeat("x", 4096))
	}
	statfs := func(string) disk { return disk{} }
	err = describeSQLite(path, full, statfs)
	var se *StorageError
	if !errors.As(err, &se) || err.Error() != "store "+path+": the disk is full" || !errors.Is(err, ErrDiskFull) || !errors.Is(err, full) {
		t.Fatalf("describe(%v) = %v", full, err)
	}
	if again := describeSQLite(path, err, statfs); again != err {
		t.Errorf("described twice: %v", again)
	}
	_, syntax := db.ExecContext(ctx, `INSERT INTO`)
	if got := describeSQLite(path, syntax, statfs); got != syntax {
		t.Errorf("a syntax error became %v", got)
	}
	if got := describeSQLite(path, nil, statfs); got != nil {
		t.Errorf("nil became %v", got)
	}
}

func TestDescribePostgres(t *testing.T) {
	for _, tc := range []struct {
		code, want string
		kind       error
	}{
		{"53100", "store db:5432/rolloutbot: the database server's disk is full", ErrDiskFull},
		{"25006", "store db:5432/rolloutbot: the database is read-only (a standby server, or default_transaction_read_only is on)", ErrReadOnly},
		{"23505", "", nil},
	} {
		pe := &pgconn.PgError{Code: tc.code, Message: "m"}
		err := describePostgres("db:5432/rolloutbot", pe)
		if tc.want == "" {
			if err != error(pe) {
				t.Errorf("%s became %v", tc.code, err)
			}
			continue
		}
		if err.Error() != tc.want || !errors.Is(err, tc.kind) || !errors.Is(err, pe) {
			t.Errorf("%s: %v", tc.code, err)
		}
	}
}

// Every connection of the embedded store syncs each commit in WAL mode.
func TestSQLiteDurability(t *testing.T) {
	s, err := openSQLite(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	ctx := context.Background()
	conns := make([]*sql.Conn, 3) // held at once, so each is another connection
	for i := range conns {
		if conns[i], err = s.db.Conn(ctx); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
		var mode string
		var sync int
		if err := conns[i].QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := conns[i].QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || sync != 2 {
			t.Errorf("connection %d: journal_mode %s, synchronous %d; want wal, 2 (FULL)", i, mode, sync)
		}
	}
}
