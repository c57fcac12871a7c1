package store_test

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rolloutbot/rolloutbot/store"
)

// readOnlyCases are databases this process may not write, each made by
// file permissions: the file's mode (0 for no file yet) and its directory's.
var readOnlyCases = []struct {
	name              string
	fileMode, dirMode os.FileMode
	want              string
	kind              error
}{
	{"file read-only", 0o444, 0o777, "the file is read-only (check the file's and its directory's owner and permissions)", store.ErrReadOnly},
	{"directory read-only", 0o666, 0o555, "its directory is read-only (check the file's and its directory's owner and permissions)", store.ErrReadOnly},
	{"both read-only", 0o444, 0o555, "its directory is read-only (check the file's and its directory's owner and permissions)", store.ErrReadOnly},
	{"new file in a read-only directory", 0, 0o555, "the file or its WAL cannot be opened or created (check the file's and its directory's owner and permissions)", nil},
}

// readOnlyEnv names, in the child process a root test starts, the directory
// holding one subdirectory per case.
const readOnlyEnv = "ROLLOUTBOT_TEST_READONLY_DIR"

// A store file the process may not write is reported as such, naming the
// file, instead of as SQLite's code. File permissions do not stop root, so
// as root the checks run in a child process of this test binary as nobody.
func TestSQLiteReadOnly(t *testing.T) {
	if dir := os.Getenv(readOnlyEnv); dir != "" {
		checkReadOnly(t, dir)
		return
	}
	dir := t.TempDir()
	for _, tc := range readOnlyCases {
		sub := filepath.Join(dir, tc.name)
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if tc.fileMode != 0 {
			db := open(t, "sqlite:"+filepath.Join(sub, "rolloutbot.db"))
			if err := db.PutHosts(context.Background(), hosts(2)); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if err := os.Chmod(filepath.Join(sub, "rolloutbot.db"), tc.fileMode); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(sub, tc.dirMode); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() != 0 {
		checkReadOnly(t, dir)
		return
	}
	// The child must reach the files and run the binary: every directory
	// up to dir searchable, and a copy of the binary nobody may execute.
	for d := dir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "store.test")
	if err := copyFile(os.Args[0], bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestSQLiteReadOnly$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), readOnlyEnv+"="+dir)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		// Root without CAP_SETUID (some containers): the checks cannot
		// run for real; TestSQLiteReason covers the words.
		t.Skipf("running as root, and cannot start a process as nobody to check file permissions: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the checks as nobody (uid 65534): %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "--- PASS: TestSQLiteReadOnly") {
		t.Fatalf("the checks as nobody did not run:\n%s", out.String())
	}
}

// checkReadOnly opens each case's store, which must fail at once, naming
// the file and why, and leave the file as it was: SQLite opens a file it
// may not write without an error, and the first write to fail must not be
// a rollout's.
func checkReadOnly(t *testing.T, dir string) {
	for _, tc := range readOnlyCases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name, "rolloutbot.db")
			before, _ := os.ReadFile(path)
			db, err := store.Open(context.Background(), "sqlite:"+path, nil)
			if err == nil {
				db.Close()
				t.Fatal("opened a store it cannot write")
			}
			if want := "open store " + path + ": " + tc.want; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("error %q is not %v", err, tc.kind)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Error("the read-only file changed")
			}
		})
	}
}

func copyFile(from, to string, mode os.FileMode) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// A PostgreSQL database that takes no writes (a standby, or
// default_transaction_read_only) is named as read-only at open, whether
// its migrations are applied already or not.
func TestPostgresReadOnly(t *testing.T) {
	for _, migrated := range []bool{false, true} {
		dsn := pg.NewDatabase(t)
		if migrated {
			open(t, dsn).Close()
		}
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(u.Path, "/")
		rawExec(t, dsn, `ALTER DATABASE `+name+` SET default_transaction_read_only = on`)
		db, err := store.Open(context.Background(), dsn, nil)
		if err == nil {
			db.Close()
			t.Fatalf("migrated %v: opened a read-only database", migrated)
		}
		want := "open store " + u.Host + "/" + name + ": the database is read-only (a standby server, or default_transaction_read_only is on)"
		if err.Error() != want || !errors.Is(err, store.ErrReadOnly) {
			t.Errorf("migrated %v: got %q, want %q", migrated, err, want)
		}
	}
}
