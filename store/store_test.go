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
		Version: "v2.4.1", Phase: rollout.PhaseRunning, Settings: rollout.DefaultSettings(), Seed: 42, Hosts: 3,
		StartedBy: "U1", Source: rollout.SourceSlack, Owner: owner, CreatedAt: now, UpdatedAt: now,
	}
}

func create(t *testing.T, db *store.DB, owner string) *rollout.Rollout {
	t.Helper()
	r := newRollout(owner)
	if err := db.CreateRollout(context.Background(), r, hosts(3), time.Minute); err != nil {
		t.Fatalf("create rollout: %v", err)
	}
	return r
}

func finish(t *testing.T, db *store.DB, r *rollout.Rollout, phase rollout.Phase) {
	t.Helper()
	r.Phase, r.FinishedAt = phase, time.Now()
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
		// Several ids at once, all or none: an unknown one removes nothing.
		if err := db.RemoveHosts(ctx, []string{all[2].ID, "nope", "nada"}); !errors.Is(err, rollout.ErrNotFound) ||
			!strings.Contains(err.Error(), "nope, nada") {
			t.Fatalf("remove unknown host: %v", err)
		}
		if still, err := db.ListHosts(ctx); err != nil || len(still) != 3 {
			t.Fatalf("a refused remove removed hosts: %v %+v", err, still)
		}
		if err := db.RemoveHosts(ctx, []string{all[2].ID}); err != nil {
			t.Fatal(err)
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
		err = db.CreateRollout(ctx, newRollout("p1"), twice, time.Minute)
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
		if got.Version != r.Version || got.Seed != 42 || got.Phase != r.Phase || got.Hosts != 3 ||
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
		// Counts tallies what HostResults holds, the hosts' part of a rollback too.
		res[0].Status, res[0].Undo = rollout.StatusSuccess, rollout.UndoResult{Status: rollout.UndoRestored}
		if err := db.SaveHostResults(ctx, "p1", res[0:1]); err != nil {
			t.Fatal(err)
		}
		all, err := db.HostResults(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := db.Counts(ctx, r.ID); err != nil || c != rollout.CountResults(all) || c.Undo.Restored != 1 {
			t.Fatalf("counts %+v (%v), want %+v", c, err, rollout.CountResults(all))
		}
		// In one batch, a host's later result supersedes its earlier one,
		// whichever they are.
		for _, order := range [][2]rollout.Status{{rollout.StatusUpdating, rollout.StatusSuccess}, {rollout.StatusSuccess, rollout.StatusFailed}} {
			earlier, later := res[0], res[0]
			earlier.Status, later.Status = order[0], order[1]
			if err := db.SaveHostResults(ctx, "p1", []rollout.HostResult{earlier, res[2], later}); err != nil {
				t.Fatal(err)
			}
			if hr, err := db.FindHostResult(ctx, r.ID, res[0].Host.ID); err != nil || hr.Status != later.Status {
				t.Fatalf("%s then %s of one host in a batch: stored %s (%v), want the later", earlier.Status, later.Status, hr.Status, err)
			}
		}
		// A host is found by its id, its ADDRESS:PORT, or an address no
		// other host has; the three hosts here share 10.0.0.1.
		for name, want := range map[string]string{res[1].Host.ID: res[1].Host.ID, "10.0.0.1:2201": res[1].Host.ID} {
			if hr, err := db.FindHostResult(ctx, r.ID, name); err != nil || hr.Host.ID != want {
				t.Errorf("find %q: %s (%v), want %s", name, hr.Host.ID, err, want)
			}
		}
		var amb *rollout.AmbiguousHostError
		if _, err := db.FindHostResult(ctx, r.ID, "10.0.0.1"); !errors.As(err, &amb) || len(amb.IDs) != 3 ||
			!strings.Contains(err.Error(), res[0].Host.ID+", "+res[1].Host.ID+", "+res[2].Host.ID) {
			t.Errorf("find an address three hosts share: %v, want the three named", err)
		}
		for _, name := range []string{"10.0.0.1:2299", "10.0.0.2"} {
			if _, err := db.FindHostResult(ctx, r.ID, name); !errors.Is(err, rollout.ErrNotFound) {
				t.Errorf("find %q: %v, want not found", name, err)
			}
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
		err := db.CreateRollout(ctx, newRollout("p2"), hosts(3), time.Minute)
		var ae *rollout.ActiveError
		if !errors.As(err, &ae) || !errors.Is(err, rollout.ErrActive) || ae.Rollout == nil || ae.Rollout.ID != first.ID {
			t.Fatalf("second start: %v", err)
		}
		if rs, _ := db.Rollouts(ctx, 10); len(rs) != 1 {
			t.Fatalf("refused start left a row: %d rollouts", len(rs))
		}
		finish(t, db, first, rollout.PhaseCompleted)
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
			wg.Go(func() {
				errs[i] = dbs[i%len(dbs)].CreateRollout(context.Background(), newRollout("p"), hosts(3), time.Minute)
			})
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
		if r.Epoch != 1 {
			t.Fatalf("a new rollout's epoch is %d, want 1", r.Epoch)
		}
		if _, err := b.ClaimRollout(ctx, r.ID, "B", time.Minute); !errors.Is(err, rollout.ErrLeaseLost) {
			t.Fatalf("claim of a live lease: %v", err)
		}
		// A renews, for a short time now; a renewal keeps the epoch.
		got, err := a.ClaimRollout(ctx, r.ID, "A", 300*time.Millisecond)
		if err != nil || got.Epoch != 1 {
			t.Fatalf("renew: %v %+v", err, got)
		}
		// A's lease runs out; B takes over, under a new epoch.
		renewed := got.LeaseUntil
		deadline := time.Now().Add(10 * time.Second)
		for tick := time.NewTicker(20 * time.Millisecond); ; <-tick.C {
			got, err = b.ClaimRollout(ctx, r.ID, "B", time.Minute)
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || got.Owner != "B" || got.Epoch != 2 {
			t.Fatalf("takeover: %v %+v", err, got)
		}
		// Both leases are on the store's clock: B's began (its lease_until
		// less its ttl) no earlier than A's ended. The test's own clock is not
		// the store's, and a virtual machine's wall clock may step.
		if took := got.LeaseUntil.Add(-time.Minute); took.Before(renewed) {
			t.Fatalf("B took over at %s, before A's lease ran out at %s", took, renewed)
		}
		res, _ := a.HostResults(ctx, r.ID)
		res[0].Status = rollout.StatusSuccess
		if err := a.SaveHostResults(ctx, "A", res[:2]); !errors.Is(err, rollout.ErrLeaseLost) {
			t.Fatalf("write by the old owner: %v", err)
		}
		if res2, _ := b.HostResults(ctx, r.ID); res2[0].Status != rollout.StatusPending {
			t.Fatalf("fenced write landed: %+v", res2[0])
		}
		r.Phase = rollout.PhaseCompleted
		if err := a.UpdateRollout(ctx, "A", r); !errors.Is(err, rollout.ErrLeaseLost) {
			t.Fatalf("update by the old owner: %v", err)
		}
		if err := b.SaveHostResults(ctx, "B", res[:1]); err != nil {
			t.Fatalf("write by the new owner: %v", err)
		}
		if err := b.ReleaseRollout(ctx, r.ID, "B"); err != nil {
			t.Fatal(err)
		}
		if got, err := a.ClaimRollout(ctx, r.ID, "A", time.Minute); err != nil || got.Epoch != 3 {
			t.Fatalf("claim after release: %v %+v", err, got)
		}
		finish(t, a, r, rollout.PhaseCompleted)
		if _, err := a.ClaimRollout(ctx, r.ID, "A", time.Minute); !errors.Is(err, rollout.ErrNotRunning) {
			t.Fatalf("claim of a finished rollout: %v", err)
		}
	})
}

// A renewal extends only a lease its owner still holds: after the lease ran
// out it succeeds while nobody claimed the rollout, under the same epoch,
// and fails once another process claimed it, even one that let it go again.
func TestRenewRollout(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a, b := open(t, dsn), open(t, dsn)
		r := create(t, a, "A")
		if _, err := b.RenewRollout(ctx, r.ID, "B", time.Minute); !errors.Is(err, rollout.ErrLeaseLost) {
			t.Fatalf("renewal by another process: %v", err)
		}
		got, err := a.RenewRollout(ctx, r.ID, "A", time.Millisecond)
		if err != nil || got.Epoch != 1 || got.Owner != "A" {
			t.Fatalf("renew: %v %+v", err, got)
		}
		expired := got.LeaseUntil
		waitStoreClock(t, a, expired)
		got, err = a.RenewRollout(ctx, r.ID, "A", time.Minute)
		if err != nil || got.Epoch != 1 || !got.LeaseUntil.After(expired) {
			t.Fatalf("renewal after the lease ran out, nobody claiming: %v %+v", err, got)
		}
		// A's lease runs out again; B claims the rollout and lets it go.
		if got, err = a.RenewRollout(ctx, r.ID, "A", time.Millisecond); err != nil {
			t.Fatal(err)
		}
		waitStoreClock(t, a, got.LeaseUntil)
		if _, err := b.ClaimRollout(ctx, r.ID, "B", time.Minute); err != nil {
			t.Fatalf("takeover: %v", err)
		}
		if err := b.ReleaseRollout(ctx, r.ID, "B"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.RenewRollout(ctx, r.ID, "A", time.Minute); !errors.Is(err, rollout.ErrLeaseLost) {
			t.Fatalf("renewal after another process claimed the rollout and let it go: %v", err)
		}
		if got, err := a.ClaimRollout(ctx, r.ID, "A", time.Minute); err != nil || got.Epoch != 3 {
			t.Fatalf("claim after release: %v %+v", err, got)
		}
		finish(t, a, r, rollout.PhaseCompleted)
		if _, err := a.RenewRollout(ctx, r.ID, "A", time.Minute); !errors.Is(err, rollout.ErrNotRunning) {
			t.Fatalf("renewal of a finished rollout: %v", err)
		}
	})
}

// waitStoreClock polls, at most 10 s, until the store's clock is past t.
func waitStoreClock(t *testing.T, db *store.DB, after time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tick := time.NewTicker(5 * time.Millisecond); ; <-tick.C {
		now, err := db.Now(context.Background())
		if err == nil && now.After(after) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store's clock did not pass %s: %v %s", after, err, now)
		}
	}
}

// Lease times are the database's clock: no process's clock takes part, so
// two bot machines whose clocks disagree still agree on who drives.
func TestLeaseUsesTheDatabaseClock(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		r := create(t, db, "A")
		for _, ttl := range []time.Duration{time.Minute, time.Hour} {
			got, err := db.ClaimRollout(ctx, r.ID, "A", ttl)
			if err != nil {
				t.Fatal(err)
			}
			now, err := db.Now(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if left := got.LeaseUntil.Sub(now); left > ttl || left < ttl-5*time.Second {
				t.Errorf("a %s lease ends %s after the database's now (%s)", ttl, left, now)
			}
		}
	})
}

func TestHaltAndResume(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		r := create(t, db, "A")
		at := time.Now().Truncate(time.Millisecond)
		got, err := db.RequestHalt(ctx, r.ID, rollout.Halt{By: "U2", Reason: "db is on fire", At: at})
		if err != nil || got.Halt == nil || got.Halt.By != "U2" || got.Halt.Reason != "db is on fire" || !got.Halt.At.Equal(at) {
			t.Fatalf("halt request: %v %+v", err, got)
		}
		// A second request keeps the first.
		got, err = db.RequestHalt(ctx, r.ID, rollout.Halt{By: "U3", Reason: "me too", At: at})
		if !errors.Is(err, rollout.ErrHalting) || got.Halt.By != "U2" {
			t.Fatalf("second halt request: %v %+v", err, got.Halt)
		}
		// The driver's write of its own view never drops the stored halt.
		r.Halt = nil
		r.UpdatedAt = time.Now()
		if err := db.UpdateRollout(ctx, "A", r); err != nil || r.Halt == nil || r.Halt.By != "U2" {
			t.Fatalf("update beside a halt request: %v %+v", err, r.Halt)
		}
		finish(t, db, r, rollout.PhaseHalted)
		got, _ = db.Rollout(ctx, r.ID)
		if got.Phase != rollout.PhaseHalted || got.Halt == nil || got.Halt.String() != "halted by U2: db is on fire" || got.FinishedAt.IsZero() {
			t.Fatalf("halted: %+v %v", got, got.Halt)
		}
		if _, err := db.RequestHalt(ctx, r.ID, rollout.Halt{By: "U2", At: at}); !errors.Is(err, rollout.ErrNotRunning) {
			t.Fatalf("halt of a halted rollout: %v", err)
		}
		// A newer rollout runs: resuming the halted one must wait for it.
		other := create(t, db, "B")
		r.Phase, r.Segment, r.Owner = rollout.PhaseRunning, rollout.Segment{Done: 1, Failures: 1}, "C"
		if err := db.ResumeRollout(ctx, r, time.Minute); !errors.Is(err, rollout.ErrActive) {
			t.Fatalf("resume beside an active rollout: %v", err)
		}
		finish(t, db, other, rollout.PhaseCompleted)
		if err := db.ResumeRollout(ctx, r, time.Minute); err != nil || r.Epoch != 2 {
			t.Fatalf("resume: %v, epoch %d", err, r.Epoch)
		}
		got, _ = db.Rollout(ctx, r.ID)
		if !got.Phase.Active() || got.Halt != nil || got.Owner != "C" || got.Segment != r.Segment || !got.FinishedAt.IsZero() {
			t.Fatalf("resumed: %+v", got)
		}
		if err := db.ResumeRollout(ctx, r, time.Minute); !errors.Is(err, rollout.ErrNotHalted) {
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
		if err := db.UnpinHostKey(ctx, "10.0.0.1:22"); !errors.Is(err, rollout.ErrNotFound) {
			t.Fatalf("unpin of a key not pinned: %v", err)
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

// Rollouts written before a rollout's state became one phase with one halt
// read back the same after the upgrade: a manual and an automatic halt, a
// completed rollout, and a running one with a halt asked for.
func TestUpgradeToOnePhase(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		old, err := store.OpenAt(ctx, dsn, 2)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now().UTC().Truncate(time.Millisecond)
		for _, r := range []struct {
			state, reason, haltedBy, requestedBy, haltReason string
			finished                                         any
		}{
			{"halted", "halted by U1: bad metrics", "U1", "", "", at},
			{"halted", "stage 10%: 2 of 3 hosts failed, more than the 30% threshold", "rolloutbot", "", "", at},
			{"completed", "", "", "", "", at},
			{"stage_50", "", "", "U2", "wait", nil},
		} {
			if err := old.Exec(ctx, `INSERT INTO rollouts (version, state, stages, concurrency, pause_ms, threshold, seed,
				host_count, stage, segment_start, started_by, source, reason, halted_by, halt_requested_by, halt_reason,
				created_at, updated_at, finished_at) VALUES ('v2', $1, '10,50,100', 5, 0, 30, 1, 3, 1, 1, 'U1', 'slack',
				$2, $3, $4, $5, $6, $6, $7)`, r.state, r.reason, r.haltedBy, r.requestedBy, r.haltReason, at, r.finished); err != nil {
				t.Fatal(err)
			}
		}
		old.Close()
		db := open(t, dsn)
		for id, want := range map[int64]struct {
			phase rollout.Phase
			halt  string
		}{
			1: {rollout.PhaseHalted, "halted by U1: bad metrics"},
			2: {rollout.PhaseHalted, "halted: stage 10%: 2 of 3 hosts failed, more than the 30% threshold"},
			3: {rollout.PhaseCompleted, ""},
			4: {rollout.PhaseRunning, "halted by U2: wait"},
		} {
			r, err := db.Rollout(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			halt := ""
			if r.Halt != nil {
				halt = r.Halt.String()
			}
			if r.Phase != want.phase || halt != want.halt || r.Stage != 1 {
				t.Errorf("rollout %d: %s, stage %d, %q; want %s, %q", id, r.Phase, r.Stage, halt, want.phase, want.halt)
			}
		}
		if r, err := db.ActiveRollout(ctx); err != nil || r.ID != 4 {
			t.Errorf("the active rollout after the upgrade: %v %+v", err, r)
		}
	})
}

// A store has a name of its own, made once: the same at every open, and
// another store's differs, so hosts never compare one store's rollout
// numbers with another's.
func TestStoreID(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		a, again := open(t, dsn), open(t, dsn)
		if a.ID() == "" || a.ID() != again.ID() {
			t.Fatalf("store ID %q, then %q", a.ID(), again.ID())
		}
		other := open(t, "sqlite:"+filepath.Join(t.TempDir(), "other.db"))
		if other.ID() == a.ID() {
			t.Fatalf("two stores named %q", a.ID())
		}
	})
}
