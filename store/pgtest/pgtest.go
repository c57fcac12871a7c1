// Package pgtest gives tests a real PostgreSQL: the server named by
// TEST_DATABASE_URL, else one answering on the local default port, else a
// throwaway server started from the local installation (initdb and pg_ctl in a
// temporary directory, on a free port, as the postgres user when run as root)
// and removed afterwards. Each test gets a database of its own.
//
// When PostgreSQL is not installed at all, tests fail with a message that says
// how to install it: they never skip silently.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL server the tests of one package share. The zero
// value is ready: the server is found or started by the first NewDatabase.
// Stop it from TestMain after m.Run.
type Server struct {
	// Durable keeps fsync and synchronous commit on, for benchmarks that
	// measure what the store costs; tests run faster without.
	Durable bool

	once     sync.Once
	err      error
	adminURL string // a superuser connection to the maintenance database
	dir      string // set when we started it
	pgCtl    string
	runAs    string
}

func (s *Server) start() error {
	s.once.Do(func() {
		var started *Server
		started, s.err = find(Options{Durable: s.Durable})
		if s.err == nil {
			s.adminURL, s.dir, s.pgCtl, s.runAs = started.adminURL, started.dir, started.pgCtl, started.runAs
		}
	})
	return s.err
}

// Options tune a throwaway server.
type Options struct{ Durable bool }

func find(opts Options) (*Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		if err := ping(ctx, u); err != nil {
			return nil, fmt.Errorf("TEST_DATABASE_URL does not answer: %w", err)
		}
		return &Server{adminURL: u}, nil
	}
	if os.Getenv("PGTEST_NO_LOCAL") == "" {
		for _, u := range []string{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"} {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			err := ping(pctx, u)
			pcancel()
			if err == nil {
				return &Server{adminURL: u}, nil
			}
		}
	}
	return startThrowaway(ctx, opts)
}

func ping(ctx context.Context, u string) error {
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// binDir finds initdb and pg_ctl: on PATH, or Debian's and the usual layouts.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	var dirs []string
	for _, pat := range []string{"/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(pat)
		dirs = append(dirs, m...)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs))) // the newest version first
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL is not installed: no server answers and no initdb was found. " +
		"Install the server (Debian/Ubuntu: apt-get install -y postgresql; macOS: brew install postgresql) " +
		"or point TEST_DATABASE_URL at a server whose user may create databases")
}

func startThrowaway(ctx context.Context, opts Options) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rolloutbot-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, pgCtl: filepath.Join(bin, "pg_ctl")}
	// PostgreSQL refuses to run as root: run it as the postgres user then.
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			os.RemoveAll(dir)
			return nil, errors.New("running as root and there is no postgres user to run a throwaway PostgreSQL as")
		}
		s.runAs = "postgres"
		if err := exec.Command("chown", "postgres", dir).Run(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("chown %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.cmd(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	conf := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", port, dir)
	if !opts.Durable {
		conf += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	if out, err := s.cmd(ctx, s.pgCtl, "start", "-w", "-t", "60", "-D", data, "-l", filepath.Join(dir, "log"),
		"-o", conf).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %w: %s %s", err, out, log)
	}
	s.adminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := ping(ctx, s.adminURL); err != nil {
		s.Stop()
		return nil, fmt.Errorf("throwaway PostgreSQL does not answer: %w", err)
	}
	return s, nil
}

func (s *Server) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	if s.runAs != "" {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", s.runAs, "--", name}, args...)...)
	}
	return exec.CommandContext(ctx, name, args...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop stops a server this package started and removes its files.
func (s *Server) Stop() {
	if s == nil || s.dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = s.cmd(ctx, s.pgCtl, "stop", "-m", "immediate", "-D", filepath.Join(s.dir, "data")).Run()
	os.RemoveAll(s.dir)
}

// AdminURL is a superuser URL of the server's maintenance database.
func (s *Server) AdminURL(tb testing.TB) string {
	tb.Helper()
	if err := s.start(); err != nil {
		tb.Fatalf("PostgreSQL for tests: %v", err)
	}
	return s.adminURL
}

// NewDatabase creates an empty database for one test, dropped when it ends,
// and returns its URL.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	if err := s.start(); err != nil {
		tb.Fatalf("PostgreSQL for tests: %v", err)
	}
	u, drop, err := s.CreateDatabase(context.Background())
	if err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(drop)
	return u
}

// CreateDatabase creates an empty database and returns its URL and a function
// that drops it.
func (s *Server) CreateDatabase(ctx context.Context) (string, func(), error) {
	if err := s.start(); err != nil {
		return "", nil, err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "rolloutbot_test_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(s.adminURL)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, s.adminURL); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	}
	return u.String(), drop, nil
}
