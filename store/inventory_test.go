package store_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
)

// operatorDB creates an application database as the seed system had it:
// users, their subscriptions, and the VPS each subscription runs on.
func operatorDB(t *testing.T) string {
	t.Helper()
	url := pg.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
CREATE TABLE users (
	id    bigint PRIMARY KEY,
	email text NOT NULL
);
CREATE TABLE subscriptions (
	id      bigint PRIMARY KEY,
	user_id bigint NOT NULL REFERENCES users,
	plan    text NOT NULL,
	active  boolean NOT NULL
);
CREATE TABLE vps (
	id              text PRIMARY KEY,
	subscription_id bigint NOT NULL REFERENCES subscriptions,
	ip              text NOT NULL,
	ssh_port        integer,
	ssh_user        text
);
INSERT INTO users VALUES (1, 'alice@acme.test'), (2, 'bob@globex.test'), (3, 'carol@initech.test'), (4, 'dave@hooli.test');
INSERT INTO subscriptions VALUES
	(10, 1, 'pro', true),
	(11, 2, 'basic', true),
	(12, 3, 'pro', false),  -- cancelled: not rolled out to
	(13, 4, 'basic', true);
INSERT INTO vps VALUES
	('vps-10', 10, '10.0.0.10', 2222, 'deploy'),
	('vps-11', 11, '10.0.0.11', NULL, NULL),
	('vps-12', 12, '10.0.0.12', 22, 'root'),
	('vps-13', 13, 'vps13.example.com', 22, 'root');
`)
	if err != nil {
		t.Fatal(err)
	}
	return url
}

const operatorQuery = `
SELECT v.id, v.ip, v.ssh_port, v.ssh_user, u.email
FROM vps v
JOIN subscriptions s ON s.id = v.subscription_id
JOIN users u ON u.id = s.user_id
WHERE s.active
ORDER BY v.id`

func count(t *testing.T, url, table string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestQueryInventory(t *testing.T) {
	url := operatorDB(t)
	hosts, err := store.QueryInventory{URL: url, Query: operatorQuery}.ActiveHosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []rollout.Host{
		{ID: "vps-10", Address: "10.0.0.10", Port: 2222, User: "deploy", Label: "alice@acme.test"},
		{ID: "vps-11", Address: "10.0.0.11", Port: 22, User: "", Label: "bob@globex.test"}, // NULL port and user
		{ID: "vps-13", Address: "vps13.example.com", Port: 22, User: "root", Label: "dave@hooli.test"},
	}
	if !reflect.DeepEqual(hosts, want) {
		t.Fatalf("got  %+v\nwant %+v", hosts, want)
	}

	// No active subscription: an empty inventory, not an error (the engine
	// then refuses to start with a message of its own).
	hosts, err = store.QueryInventory{URL: url, Query: operatorQuery + " LIMIT 0"}.ActiveHosts(context.Background())
	if err != nil || len(hosts) != 0 {
		t.Fatalf("empty: %+v %v", hosts, err)
	}
}

// The column types an application database really has: a uuid id, an inet
// address, a smallint or numeric port. Each becomes what PostgreSQL prints.
func TestQueryInventoryColumnTypes(t *testing.T) {
	url := pg.NewDatabase(t)
	hosts, err := store.QueryInventory{URL: url, Query: `
SELECT * FROM (VALUES
	('6f1c2a9e-0d7b-4c1e-9a55-3c2b1d0e4f11'::uuid, '10.0.0.1'::inet, 2222::smallint, 'deploy'::varchar, 42::bigint),
	('0b7e7a52-5f0e-4a43-8d7e-2f6c9b1a3d22'::uuid, '2001:db8::2'::inet, 22::smallint, NULL, NULL)
) AS t`}.ActiveHosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []rollout.Host{
		{ID: "6f1c2a9e-0d7b-4c1e-9a55-3c2b1d0e4f11", Address: "10.0.0.1", Port: 2222, User: "deploy", Label: "42"},
		{ID: "0b7e7a52-5f0e-4a43-8d7e-2f6c9b1a3d22", Address: "2001:db8::2", Port: 22},
	}
	if !reflect.DeepEqual(hosts, want) {
		t.Fatalf("got  %+v\nwant %+v", hosts, want)
	}
	hosts, err = store.QueryInventory{URL: url, Query: `SELECT 'a', 'h.example.com', 2200::numeric, 'u', 'l'`}.ActiveHosts(context.Background())
	if err != nil || len(hosts) != 1 || hosts[0].Port != 2200 {
		t.Fatalf("numeric port: %+v %v", hosts, err)
	}
}

// The query runs in a read-only transaction: a query that writes fails and
// changes nothing.
func TestQueryInventoryIsReadOnly(t *testing.T) {
	url := operatorDB(t)
	for _, q := range []string{
		`WITH x AS (DELETE FROM users RETURNING 1) SELECT v.id, v.ip, v.ssh_port, v.ssh_user, 'x' FROM vps v`,
		`WITH x AS (UPDATE subscriptions SET active = false RETURNING id) SELECT 'a', 'b', 22, 'c', 'd' FROM x`,
		`WITH x AS (INSERT INTO users VALUES (99, 'mallory@evil.test') RETURNING id) SELECT 'a', 'b', 22, 'c', 'd' FROM x`,
		`WITH x AS (DELETE FROM vps RETURNING 1) SELECT count(*) FROM x`, // wrong columns as well
	} {
		hosts, err := store.QueryInventory{URL: url, Query: q}.ActiveHosts(context.Background())
		if err == nil {
			t.Errorf("%s: no error, hosts %+v", q, hosts)
		}
	}
	if n := count(t, url, "users"); n != 4 {
		t.Errorf("users: %d rows, want 4", n)
	}
	if n := count(t, url, "vps"); n != 4 {
		t.Errorf("vps: %d rows, want 4", n)
	}
	if hosts, err := (store.QueryInventory{URL: url, Query: operatorQuery}).ActiveHosts(context.Background()); err != nil || len(hosts) != 3 {
		t.Errorf("after the writes: %d hosts, %v", len(hosts), err)
	}
	_, err := store.QueryInventory{URL: url, Query: `WITH x AS (DELETE FROM users RETURNING 1) SELECT v.id, v.ip, v.ssh_port, v.ssh_user, 'x' FROM vps v`}.
		ActiveHosts(context.Background())
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("error %v does not say the transaction is read-only", err)
	}
}

func TestQueryInventoryErrors(t *testing.T) {
	url := operatorDB(t)
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"too few columns", `SELECT id, ip, ssh_port, ssh_user FROM vps`, []string{"4 columns", "id, address, port, user, label"}},
		{"too many columns", `SELECT id, ip, ssh_port, ssh_user, 'l', 'extra' FROM vps`, []string{"6 columns"}},
		{"duplicate ids", `SELECT 'vps-1', ip, ssh_port, ssh_user, NULL FROM vps`, []string{"vps-1", "twice"}},
		{"NULL address", `SELECT id, NULL, ssh_port, ssh_user, NULL FROM vps`, []string{"address is empty"}},
		{"NULL id", `SELECT NULL, ip, ssh_port, ssh_user, NULL FROM vps`, []string{"id is empty"}},
		{"port out of range", `SELECT id, ip, 70000, ssh_user, NULL FROM vps`, []string{"port 70000"}},
		{"port 0", `SELECT id, ip, CASE WHEN id = 'vps-11' THEN 0 ELSE ssh_port END, ssh_user, NULL FROM vps`,
			[]string{"inventory query", "host vps-11: port 0"}},
		{"one machine twice", `SELECT id, CASE WHEN id = 'vps-13' THEN 'VPS10.example.com' ELSE 'vps10.example.com' END, 22, NULL, NULL
			FROM vps WHERE id IN ('vps-10', 'vps-13') ORDER BY id`,
			[]string{"inventory query", "hosts vps-10 and vps-13 have the same address", ":22"}},
		{"NULL port is 22", `SELECT id, '10.0.0.10', CASE WHEN id = 'vps-10' THEN 22 END, NULL, NULL FROM vps WHERE id IN ('vps-10', 'vps-11') ORDER BY id`,
			[]string{"hosts vps-10 and vps-11 have the same address 10.0.0.10:22"}},
		{"port not a number", `SELECT id, ip, 'ssh', ssh_user, NULL FROM vps`, []string{"port", "ssh"}},
		{"syntax error", `SELEC id FROM vps`, []string{"inventory query", "syntax"}},
		{"unknown table", `SELECT id, ip, 22, NULL, NULL FROM servers`, []string{"inventory query", "servers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, err := store.QueryInventory{URL: url, Query: tc.query}.ActiveHosts(context.Background())
			if err == nil {
				t.Fatalf("no error, hosts %+v", hosts)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// A query that does not answer in time fails instead of hanging the start.
func TestQueryInventoryTimeout(t *testing.T) {
	url := pg.NewDatabase(t)
	start := time.Now()
	_, err := store.QueryInventory{URL: url, Query: `SELECT 'a', 'b', 22, NULL, pg_sleep(30)::text`, Timeout: 300 * time.Millisecond}.
		ActiveHosts(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the query ran %s past a 300ms timeout", d)
	}
}

// A wrong URL fails with the host named and the password not shown.
func TestQueryInventoryBadURLHidesThePassword(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string
	}{
		{"postgres://bob:s3cret@127.0.0.1:1/app", "127.0.0.1"},
		{"postgresql://bob:s3cret@127.0.0.1:1/app?sslmode=disable", "127.0.0.1"},
		{"postgres://bob:s3cret@127.0.0.1:port/app", ""},
		{"postgres://bob:s3c%zzret@127.0.0.1:1/app", ""},
		{"postgres://bob:s3cret@127.0.0.1:1/app?password=s3cret", ""},
		{"host=127.0.0.1 port=1 user=bob password=s3cret dbname=app", ""},
		{"host=127.0.0.1 port=x user=bob password=s3cret dbname=app", ""},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := store.QueryInventory{URL: tc.url, Query: operatorQuery}.ActiveHosts(ctx)
		cancel()
		if err == nil {
			t.Errorf("%s: no error", tc.url)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "s3c%zzret") {
			t.Errorf("%s: error shows the password: %v", tc.url, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not name %q", tc.url, err, tc.want)
		}
	}
}
