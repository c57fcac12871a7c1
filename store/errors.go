package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors for a store that cannot take writes, as opposed to one that is away
// for a moment: waiting does not help, an operator has to act.
var (
	ErrDiskFull = errors.New("the disk is full")
	ErrReadOnly = errors.New("the store is read-only")
)

// StorageError says, naming the store, why it cannot write, in the words an
// operator acts on: the driver's codes ("disk I/O error (4874)") say neither
// which file nor what to do. It wraps ErrDiskFull or ErrReadOnly when it is
// one of those, and the driver's error.
type StorageError struct {
	Store  string // the SQLite file, or PostgreSQL's host:port/database
	Reason string
	kind   error // ErrDiskFull, ErrReadOnly or nil
	err    error // the driver's
}

func (e *StorageError) Error() string { return "store " + e.Store + ": " + e.Reason }

// Unwrap returns the kind, when there is one, and the driver's error.
func (e *StorageError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// disk is what statfs says about the file system a store's file is on.
type disk struct {
	full     bool // under 1 MiB left for this process
	noInodes bool
	readOnly bool // mounted read-only
}

// describeSQLite returns err as a *StorageError naming file when SQLite says
// the disk is full, the file cannot be written, or a write failed; otherwise
// err itself. Once described, an error is returned as it is.
func describeSQLite(file string, err error, statfs func(file string) disk) error {
	var se *sqlite.Error
	var done *StorageError
	if err == nil || !errors.As(err, &se) || errors.As(err, &done) {
		return err
	}
	reason, kind := sqliteReason(se.Code(), func() disk { return statfs(file) })
	if reason == "" {
		return err
	}
	if kind == nil { // no diagnosis: the driver's words are all there is
		reason += ": " + err.Error()
	}
	return &StorageError{Store: file, Reason: reason, kind: kind, err: err}
}

// sqliteReason says why a write failed with SQLite's extended result code,
// asking the file system when the code alone does not tell; "" when the code
// is not about the disk or the file.
func sqliteReason(code int, statfs func() disk) (string, error) {
	switch code & 0xff {
	case sqlite3.SQLITE_FULL:
		return fullReason(statfs()), ErrDiskFull
	case sqlite3.SQLITE_READONLY:
		switch code {
		case sqlite3.SQLITE_READONLY_DBMOVED:
			return "the file was moved or deleted while open (restart rolloutbot)", ErrReadOnly
		case sqlite3.SQLITE_READONLY_DIRECTORY:
			return "its directory is read-only (" + ownerAdvice + ")", ErrReadOnly
		}
		if statfs().readOnly {
			return roMountReason, ErrReadOnly
		}
		return "the file is read-only (" + ownerAdvice + ")", ErrReadOnly
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN:
		// A full disk or a read-only mount shows as an I/O error where
		// SQLite grows its shared-memory file or writes to a file the
		// kernel remounted read-only, or as a WAL it cannot create: ask
		// the file system which it is.
		switch d := statfs(); {
		case d.full || d.noInodes:
			return fullReason(d), ErrDiskFull
		case d.readOnly:
			return roMountReason, ErrReadOnly
		}
		switch {
		case code&0xff == sqlite3.SQLITE_CANTOPEN:
			return "the file or its WAL cannot be opened or created (" + ownerAdvice + ")", nil
		case code == sqlite3.SQLITE_IOERR_READ || code == sqlite3.SQLITE_IOERR_SHORT_READ:
			return "reading the file failed", nil
		}
		return "writing to the disk failed", nil
	}
	return "", nil
}

const (
	ownerAdvice   = "check the file's and its directory's owner and permissions"
	roMountReason = "the file system it is on is mounted read-only"
)

func fullReason(d disk) string {
	if d.noInodes && !d.full {
		return "the disk is full (no free inodes)"
	}
	return "the disk is full"
}

// describePostgres returns err as a *StorageError naming the database when
// the server's disk is full or it takes no writes; otherwise err itself.
func describePostgres(name string, err error) error {
	var pe *pgconn.PgError
	var done *StorageError
	if err == nil || !errors.As(err, &pe) || errors.As(err, &done) {
		return err
	}
	switch pe.Code {
	case "53100": // disk_full
		return &StorageError{Store: name, Reason: "the database server's disk is full", kind: ErrDiskFull, err: err}
	case "25006": // read_only_sql_transaction
		return &StorageError{Store: name, Reason: "the database is read-only (a standby server, or default_transaction_read_only is on)", kind: ErrReadOnly, err: err}
	}
	return err
}
