package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
	"github.com/rolloutbot/rolloutbot/store/pgtest"
)

var pg pgtest.Server

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// backends runs the contract once per backend. open returns a fresh, empty
// store; calling it again with the same dsn opens a second handle on the same
// database, as a second process would.
func backends(t *testing.T, contract func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) {
		contract(t, "sqlite:"+filepath.Join(t.TempDir(), "rolloutbot.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		contract(t, pg.NewDatabase(t))
	})
}

func open(t *testing.T, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(db.Close)
	return db
}

func hosts(n int) []rollout.Host {
	out := make([]rollout.Host, n)
	for i := range out {
		out[i] = rollout.Host{ID: "h" + string(rune('a'+i%26)) + string(rune('0'+i/26)), Address: "10.0.0.1", Port: 2200 + i, User: "deploy", Label: "c"}
	}
	return out
}

func newRollout(owner string) *rollout.Rollout {
	now := time.Now().Truncate(time.Millisecond)
	return &rollout.Rollout{
		Version: "v2.4.1", State: rollout.StageState(10), Settings: rollout.DefaultSettings(), Seed: 42, Hosts: 3,
		StartedBy: "U1", Source: rollout.SourceSlack, Owner: owner, LeaseUntil: now.Add(time.Minute),
		CreatedAt: now, UpdatedAt: now,
	}
}

func create(t *testing.T, db *store.DB, owner string) *rollout.Rollout {
	t.Helper()
	r := newRollout(owner)
	if err := db.CreateRollout(context.Background(), r, hosts(3)); err != nil {
		t.Fatalf("create rollout: %v", err)
	}
	return r
}

func finish(t *testing.T, db *store.DB, r *rollout.Rollout, state rollout.State) {
	t.Helper()
	r.State, r.FinishedAt = state, time.Now()
	if err := db.UpdateRollout(context.Background(), r.Owner, r); err != nil {
		t.Fatalf("finish rollout: %v", err)
	}
}

func TestMigrationsAreIdempotent(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		db := open(t, dsn)
		open(t, dsn) // a second start applies nothing and fails on nothing
		applied, err := db.AppliedMigrations(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := db.Migrations()
		if len(applied) != len(ms) || len(ms) == 0 {
			t.Fatalf("applied %v of %d migrations", applied, len(ms))
		}
	})
}

func TestInventory(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		if err := db.PutHosts(ctx, hosts(3)); err != nil {
			t.Fatal(err)
		}
		// An invalid entry anywhere rejects the whole import.
		bad := append(hosts(2), rollout.Host{ID: "x", Address: ""})
		bad[0].Label = "changed"
		if err := db.PutHosts(ctx, bad); err == nil {
			t.Fatal("import with an empty address was accepted")
		}
		all, err := db.ListHosts(ctx)
		if err != nil || len(all) != 3 || all[0].Label != "c" {
			t.Fatalf("after refused import: %v %+v", err, all)
		}
		if all[0].Port != 2200 || all[0].User != "deploy" {
			t.Fatalf("host round trip: %+v", all[0])
		}
		if err := db.SetHostDisabled(ctx, all[1].ID, true); err != nil {
			t.Fatal(err)
		}
		if err := db.RemoveHost(ctx, all[2].ID); err != nil {
			t.Fatal(err)
		}
		if err := db.RemoveHost(ctx, "nope"); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("remove unknown host: %v", err)
		}
		active, err := db.ActiveHosts(ctx)
		if err != nil || len(active) != 1 || active[0].ID != all[0].ID {
			t.Fatalf("active hosts: %v %+v", err, active)
		}
		upd := all[0]
		upd.Address = "10.9.9.9"
		if err := db.PutHosts(ctx, []rollout.Host{upd}); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.ActiveHosts(ctx); got[0].Address != "10.9.9.9" {
			t.Fatalf("upsert: %+v", got[0])
		}
	})
}

// One machine, one entry: a host whose address and port another id has
// (stored, disabled, or in the same import) is refused, as is an explicit
// port 0, and a refused import changes nothing.
func TestInventoryOneEntryPerMachine(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		stored := []rollout.Host{
			{ID: "web-1", Address: "10.0.0.4", Port: 22},
			{ID: "web-2", Address: "Web2.Example.com", Port: 2222},
			{ID: "web-3", Address: "10.0.0.6", Port: 22, Disabled: true},
		}
		if err := db.PutHosts(ctx, stored); err != nil {
			t.Fatal(err)
		}
		before, err := db.ListHosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			put  []rollout.Host
			want string
		}{
			{"a stored machine under a new id", []rollout.Host{{ID: "new-1", Address: "10.0.0.9", Port: 22}, {ID: "web-7", Address: "10.0.0.4", Port: 22}},
				"hosts web-1 and web-7 have the same address 10.0.0.4:22"},
			{"a name in another case", []rollout.Host{{ID: "web-8", Address: "web2.example.COM", Port: 2222}}, "hosts web-2 and web-8"},
			{"a disabled host's machine", []rollout.Host{{ID: "web-9", Address: "10.0.0.6", Port: 22}}, "hosts web-3 and web-9"},
			{"a stored host moved onto another", []rollout.Host{{ID: "web-2", Address: "10.0.0.4", Port: 22}}, "hosts web-1 and web-2"},
			{"twice in one import", []rollout.Host{{ID: "new-1", Address: "10.0.0.9", Port: 22}, {ID: "new-2", Address: "10.0.0.9", Port: 22}},
				"hosts new-1 and new-2 have the same address 10.0.0.9:22"},
			{"port 0", []rollout.Host{{ID: "new-1", Address: "10.0.0.9", Port: 22}, {ID: "new-3", Address: "10.0.0.10", Port: 0}}, "host new-3: port 0"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := db.PutHosts(ctx, tc.put)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error containing %q", err, tc.want)
				}
				if after, _ := db.ListHosts(ctx); !reflect.DeepEqual(after, before) {
					t.Fatalf("a refused import changed the inventory:\nbefore %+v\nafter  %+v", before, after)
				}
			})
		}

		// Two hosts trading addresses in one import is no duplicate.
		swap := []rollout.Host{{ID: "web-1", Address: "web2.example.com", Port: 2222}, {ID: "web-2", Address: "10.0.0.4", Port: 22}}
		if err := db.PutHosts(ctx, swap); err != nil {
			t.Fatalf("swap: %v", err)
		}
		if got, err := db.ActiveHosts(ctx); err != nil || len(got) != 2 || got[0] != swap[0] || got[1] != swap[1] {
			t.Fatalf("after the swap: %v %+v", err, got)
		}

		// A rollout's snapshot with one machine twice is not recorded.
		twice := []rollout.Host{{ID: "a", Address: "10.0.0.4", Port: 22}, {ID: "b", Address: "10.0.0.4", Port: 0}}
		err = db.CreateRollout(ctx, newRollout("p1"), twice)
		if err == nil || !strings.Contains(err.Error(), "hosts a and b have the same address 10.0.0.4:22") {
			t.Fatalf("snapshot with one machine twice: %v", err)
		}
		if rs, _ := db.Rollouts(ctx, 10); len(rs) != 0 {
			t.Fatalf("a refused snapshot was recorded: %+v", rs[0])
		}
	})
}

// rawExec runs a statement on the store's database behind its back, as an
// older rolloutbot or an operator's hand would.
func rawExec(t *testing.T, dsn, stmt string) {
	t.Helper()
	ctx := context.Background()
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
		return
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatal(err)
	}
}

// Two entries for one machine stored before they were refused fail the
// store's inventory, and every import until one is moved or removed.
func TestInventoryStoredDuplicates(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		rawExec(t, dsn, `INSERT INTO hosts (id, address, port, created_at, updated_at) VALUES
			('web-1', '10.0.0.4', 22, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
			('web-7', '10.0.0.4', 22, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)`)
		const want = "hosts web-1 and web-7 have the same address 10.0.0.4:22"
		if _, err := db.ActiveHosts(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("active hosts: %v", err)
		}
		if err := db.PutHosts(ctx, []rollout.Host{{ID: "web-2", Address: "10.0.0.5", Port: 22}}); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("import beside the pair: %v", err)
		}
		if err := db.PutHosts(ctx, []rollout.Host{{ID: "web-7", Address: "10.0.0.7", Port: 22}}); err != nil {
			t.Fatalf("moving one of the pair: %v", err)
		}
		if got, err := db.ActiveHosts(ctx); err != nil || len(got) != 2 {
			t.Fatalf("after the move: %v %+v", err, got)
		}
	})
}

func TestRolloutRoundTrip(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		r := create(t, db, "p1")
		got, err := db.Rollout(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != r.Version || got.Seed != 42 || got.State != r.State || got.Hosts != 3 ||
			got.Settings.Pause != r.Settings.Pause || len(got.Settings.Stages) != 3 || got.Owner != "p1" ||
			!got.CreatedAt.Equal(r.CreatedAt) || !got.LeaseUntil.Equal(r.LeaseUntil) || got.Source != rollout.SourceSlack {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
		res, err := db.HostResults(ctx, r.ID)
		if err != nil || len(res) != 3 {
			t.Fatalf("host results: %v %d", err, len(res))
		}
		for i, hr := range res {
			if hr.Index != i || hr.Status != rollout.StatusPending || hr.Host.ID != hosts(3)[i].ID {
				t.Fatalf("host %d: %+v", i, hr)
			}
		}
		started := time.Now().Truncate(time.Millisecond)
		res[1].Status, res[1].Step, res[1].PrevVersion, res[1].NewVersion = rollout.StatusRolledBack, rollout.StepHealth, "v1", "v1"
		res[1].Error, res[1].Output, res[1].StartedAt, res[1].FinishedAt = "health failed: exit 1", "tail", started, started.Add(time.Second)
		if err := db.SaveHostResults(ctx, "p1", res[1:2]); err != nil {
			t.Fatal(err)
		}
		hr, err := db.FindHostResult(ctx, r.ID, res[1].Host.ID)
		if err != nil {
			t.Fatal(err)
		}
		if hr.Status != rollout.StatusRolledBack || hr.Error != res[1].Error || hr.Output != "tail" ||
			!hr.StartedAt.Equal(started) || !hr.FinishedAt.Equal(started.Add(time.Second)) || hr.PrevVersion != "v1" {
			t.Fatalf("saved result: %+v", hr)
		}
		// A command's output is bytes: a NUL or invalid UTF-8 must not make the
		// result unstorable (PostgreSQL's text refuses both), or the rollout
		// would wait on that write forever.
		res[2].Status, res[2].Error, res[2].Output = rollout.StatusFailed, "update failed: \xff", "bin\x00ary \xe2\x82 caf\xe9"
		if err := db.SaveHostResults(ctx, "p1", res[2:3]); err != nil {
			t.Fatalf("binary output: %v", err)
		}
		hr, err = db.FindHostResult(ctx, r.ID, res[2].Host.ID)
		if err != nil || hr.Output != "bin\uFFFDary \uFFFD caf\uFFFD" || hr.Error != "update failed: \uFFFD" {
			t.Fatalf("binary output stored as %q, %q (%v)", hr.Output, hr.Error, err)
		}
		if _, err := db.FindHostResult(ctx, r.ID, "nope"); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("unknown host: %v", err)
		}
		if _, err := db.Rollout(ctx, 999); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("unknown rollout: %v", err)
		}
	})
}

func TestOneActiveRollout(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		first := create(t, db, "p1")
		err := db.CreateRollout(ctx, newRollout("p2"), hosts(3))
		var ae *rollout.ActiveError
		if !errors.As(err, &ae) || !errors.Is(err, rollout.ErrActive) || ae.Rollout == nil || ae.Rollout.ID != first.ID {
			t.Fatalf("second start: %v", err)
		}
		if rs, _ := db.Rollouts(ctx, 10); len(rs) != 1 {
			t.Fatalf("refused start left a row: %d rollouts", len(rs))
		}
		finish(t, db, first, rollout.StateCompleted)
		if _, err := db.ActiveRollout(ctx); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("active after completion: %v", err)
		}
		second := create(t, db, "p2")
		rs, err := db.Rollouts(ctx, 1)
		if err != nil || len(rs) != 1 || rs[0].ID != second.ID {
			t.Fatalf("newest first: %v %+v", err, rs)
		}
	})
}

// Several handles (as several processes would have) race to start: exactly one wins.
func TestConcurrentStartsOneWins(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		dbs := []*store.DB{open(t, dsn), open(t, dsn), open(t, dsn), open(t, dsn)}
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { errs[i] = dbs[i%len(dbs)].CreateRollout(context.Background(), newRollout("p"), hosts(3)) })
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, rollout.ErrActive):
				t.Errorf("loser got %v, want ErrActive", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d starts won", won)
		}
	})
}

func TestLeaseFencing(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a, b := open(t, dsn), open(t, dsn)
		r := create(t, a, "A")
		now := time.Now()
		if _, err := b.ClaimRollout(ctx, r.ID, "B", now, time.Minute); !errors.Is(err, rollout.ErrLeaseLost) {
			t.Fatalf("claim of a live lease: %v", err)
		}
		if _, err := a.ClaimRollout(ctx, r.ID, "A", now, time.Minute); err != nil {
			t.Fatalf("renew: %v", err)
		}
		// A's lease runs out; B takes over.
		got, err := b.ClaimRollout(ctx, r.ID, "B", now.Add(2*time.Minute), time.Minute)
		if err != nil || got.Owner != "B" {
			t.Fatalf("takeover: %v %+v", err, got)
		}
		res, _ := a.HostResults(ctx, r.ID)
		res[0].Status = rollout.StatusSuccess
		if err := a.SaveHostResults(ctx, "A", res[:2]); !errors.Is(err, rollout.ErrLeaseLost) {
			t.Fatalf("write by the old owner: %v", err)
		}
		if res2, _ := b.HostResults(ctx, r.ID); res2[0].Status != rollout.StatusPending {
			t.Fatalf("fenced write landed: %+v", res2[0])
		}
		r.State = rollout.StateCompleted
		if err := a.UpdateRollout(ctx, "A", r); !errors.Is(err, rollout.ErrLeaseLost) {
			t.Fatalf("update by the old owner: %v", err)
		}
		if err := b.SaveHostResults(ctx, "B", res[:1]); err != nil {
			t.Fatalf("write by the new owner: %v", err)
		}
		if err := b.ReleaseRollout(ctx, r.ID, "B"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.ClaimRollout(ctx, r.ID, "A", time.Now(), time.Minute); err != nil {
			t.Fatalf("claim after release: %v", err)
		}
		finish(t, a, r, rollout.StateCompleted)
		if _, err := a.ClaimRollout(ctx, r.ID, "A", time.Now(), time.Minute); !errors.Is(err, rollout.ErrNotRunning) {
			t.Fatalf("claim of a finished rollout: %v", err)
		}
	})
}

func TestHaltAndResume(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		r := create(t, db, "A")
		if err := db.RequestHalt(ctx, r.ID, "U2", "db is on fire"); err != nil {
			t.Fatal(err)
		}
		got, _ := db.Rollout(ctx, r.ID)
		if got.HaltRequestedBy != "U2" || got.HaltReason != "db is on fire" {
			t.Fatalf("halt request: %+v", got)
		}
		r.Reason, r.HaltedBy = "halted by U2: db is on fire", "U2"
		finish(t, db, r, rollout.StateHalted)
		got, _ = db.Rollout(ctx, r.ID)
		if got.HaltRequestedBy != "" || got.State != rollout.StateHalted || got.HaltedBy != "U2" || got.FinishedAt.IsZero() {
			t.Fatalf("halted: %+v", got)
		}
		if err := db.RequestHalt(ctx, r.ID, "U2", ""); !errors.Is(err, rollout.ErrNotRunning) {
			t.Fatalf("halt of a halted rollout: %v", err)
		}
		// A newer rollout runs: resuming the halted one must wait for it.
		other := create(t, db, "B")
		r.State, r.SegmentStart, r.Owner = rollout.StageState(10), 1, "C"
		if err := db.ResumeRollout(ctx, r); !errors.Is(err, rollout.ErrActive) {
			t.Fatalf("resume beside an active rollout: %v", err)
		}
		finish(t, db, other, rollout.StateCompleted)
		if err := db.ResumeRollout(ctx, r); err != nil {
			t.Fatalf("resume: %v", err)
		}
		got, _ = db.Rollout(ctx, r.ID)
		if !got.State.Active() || got.Reason != "" || got.Owner != "C" || got.SegmentStart != 1 || !got.FinishedAt.IsZero() {
			t.Fatalf("resumed: %+v", got)
		}
		if err := db.ResumeRollout(ctx, r); !errors.Is(err, rollout.ErrNotHalted) {
			t.Fatalf("resume of a running rollout: %v", err)
		}
	})
}

func TestAuditAndHostKeys(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		at := time.Now().Truncate(time.Millisecond)
		for _, e := range []rollout.AuditEntry{
			{At: at, Actor: "U1", Source: rollout.SourceSlack, Action: "start", RolloutID: 0, Allowed: false, Detail: "not an admin"},
			{At: at, Actor: "alice", Source: rollout.SourceCLI, Action: "halt", RolloutID: 7, Allowed: true},
		} {
			if err := db.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		log, err := db.AuditLog(ctx, 10)
		if err != nil || len(log) != 2 {
			t.Fatalf("audit log: %v %d", err, len(log))
		}
		if log[0].Actor != "alice" || log[0].RolloutID != 7 || !log[0].Allowed || log[1].Detail != "not an admin" ||
			log[1].Allowed || !log[1].At.Equal(at) || log[1].Source != rollout.SourceSlack {
			t.Fatalf("audit entries: %+v", log)
		}

		if k, err := db.PinnedHostKey(ctx, "10.0.0.1:22"); err != nil || k != "" {
			t.Fatalf("no pin yet: %q %v", k, err)
		}
		if k, err := db.PinHostKey(ctx, "10.0.0.1:22", "ssh-ed25519 AAAA1"); err != nil || k != "ssh-ed25519 AAAA1" {
			t.Fatalf("pin: %q %v", k, err)
		}
		if k, err := db.PinHostKey(ctx, "10.0.0.1:22", "ssh-ed25519 AAAA2"); err != nil || k != "ssh-ed25519 AAAA1" {
			t.Fatalf("second pin must keep the first key: %q %v", k, err)
		}
		if err := db.UnpinHostKey(ctx, "10.0.0.1:22"); err != nil {
			t.Fatal(err)
		}
		if k, _ := db.PinnedHostKey(ctx, "10.0.0.1:22"); k != "" {
			t.Fatalf("unpinned key still there: %q", k)
		}
	})
}

func TestBadDatabaseURL(t *testing.T) {
	_, err := store.Open(context.Background(), "postgres://bob:s3cret@127.0.0.1:1/nope?connect_timeout=2", nil)
	if err == nil {
		t.Fatal("opened a database that is not there")
	}
	if msg := err.Error(); !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "s3cret") {
		t.Fatalf("error should name the database without its password: %s", msg)
	}
	_, err = store.Open(context.Background(), "postgres://bob:s3cret@%zz/nope", nil)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("unparsable URL: %v", err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://bob:s3cret@db:5432/x":                 "postgres://bob:xxxxx@db:5432/x",
		"postgres://bob@db/x?password=s3cret&sslmode=off": "postgres://bob@db/x?password=xxxxx&sslmode=off",
		"host=db user=bob password=s3cret dbname=x":       "host=db user=bob password=xxxxx dbname=x",
		"host=db password='s3 cret' dbname=x":             "host=db password=xxxxx dbname=x",
		"sqlite:/var/lib/rolloutbot/r.db":                 "sqlite:/var/lib/rolloutbot/r.db",
	} {
		if got := store.Redact(in); got != want || strings.Contains(got, "s3") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
