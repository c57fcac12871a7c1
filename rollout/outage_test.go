package rollout_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

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

// logWatch is a log destination the test can wait on.
type logWatch struct {
	watched
	buf bytes.Buffer
}

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.signal()
	return l.buf.Write(p)
}

func (l *logWatch) waitFor(t *testing.T, s string) {
	t.Helper()
	l.waitUntil(t, 20*time.Second, func() bool { return strings.Contains(l.buf.String(), s) }, fmt.Sprintf("no log line with %q", s))
}

// The database goes away mid-rollout: no host's update starts while its start
// cannot be recorded, results wait instead of being lost, and the rollout
// carries on when the database is back.
func TestDatabaseGoesAway(t *testing.T) {
	proxy, dsn := pgtest.NewProxy(t, pg.NewDatabase(t))
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f, logs := newFleet(), &logWatch{}
	hosts, done := gatedRollout(t, db, f, 8, logs, nil)
	order := rollout.Shuffle(hosts, 7)

	// Two updates run; the database goes away; the first ends (a result
	// that cannot be written yet) and its worker goes on to the third host,
	// whose start cannot be written either. Its version is read all the
	// same; its update must wait for its start.
	f.waitFor(t, "2 updates in flight", func() bool { return len(f.started) == 2 })
	third := order[2].ID
	proxy.Cut()
	f.release(order[0].ID)
	f.waitFor(t, "the third host's version read", func() bool { return f.versionsRead == 3 })
	f.release(order[1].ID)
	logs.waitFor(t, "store unavailable")
	f.mu.Lock()
	started, updates := len(f.started), f.updates[third]
	f.mu.Unlock()
	if started != 2 || updates != 0 {
		t.Fatalf("during the outage %d updates started (want the 2 already recorded), the held host was updated %d times", started, updates)
	}

	proxy.Restore()
	for _, h := range order[2:] {
		f.release(h.ID)
	}
	res := <-done
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("after the database came back: %v %+v\n%s", res.err, res.r, logs.buf.String())
	}
	logs.waitFor(t, "store is back")
	results, err := db.HostResults(ctx, res.r.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, hr := range results {
		if hr.Status != rollout.StatusSuccess || f.updates[hr.Host.ID] != 1 {
			t.Errorf("%s: %s after %d updates", hr.Host.ID, hr.Status, f.updates[hr.Host.ID])
		}
	}
}

// An audit entry made while the database is away is not lost: it waits, in
// order with the others, and is written when the database is back.
func TestAuditSurvivesAnOutage(t *testing.T) {
	proxy, dsn := pgtest.NewProxy(t, pg.NewDatabase(t))
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logs := &logWatch{}
	eng := rollout.New(rollout.Config{Store: db, Inventory: db, Updater: newFleet(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	proxy.Cut()
	for _, action := range []string{"halt", "resume"} {
		eng.Audit(ctx, rollout.AuditEntry{Actor: "U1", Source: rollout.SourceSlack, Action: action, Allowed: false, Detail: "during the outage"})
	}
	logs.waitFor(t, "audit entry not written; retrying")
	proxy.Restore()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := eng.FlushAudit(fctx); err != nil {
		t.Fatal(err)
	}
	entries, err := db.AuditLog(ctx, 10)
	if err != nil || len(entries) != 2 || entries[1].Action != "halt" || entries[0].Action != "resume" || entries[0].Detail != "during the outage" {
		t.Fatalf("audit log after the outage: %v %+v", err, entries)
	}
}

// gatedRollout starts a rollout of v2 on n hosts of fleet f whose updates
// are held until released, in one stage, two at once, driven by "p1" with a
// 1 s lease, logging to logs and telling rec (if not nil) its events. It
// returns the hosts and the run.
func gatedRollout(t *testing.T, db *store.DB, f *fleet, n int, logs *logWatch, rec *recorder) ([]rollout.Host, <-chan runResult) {
	t.Helper()
	ctx := context.Background()
	var hosts []rollout.Host
	for i := range n {
		id := fmt.Sprintf("h%03d", i)
		hosts = append(hosts, rollout.Host{ID: id, Address: "192.0.2.1", Port: 2000 + i})
		f.version[id], f.initial[id] = "v1", "v1"
		f.gate(id)
	}
	if err := db.PutHosts(ctx, hosts); err != nil {
		t.Fatal(err)
	}
	cfg := rollout.Config{Store: db, Inventory: db, Updater: f, Owner: "p1", Seed: func() int64 { return 7 },
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
		Defaults: rollout.Settings{Stages: []int{100}, Concurrency: 2, Threshold: 30}, LeaseTTL: time.Second,
		PollInterval: 20 * time.Millisecond, HealthTimeout: time.Second, HealthInterval: 10 * time.Millisecond}
	if rec != nil {
		cfg.Notifier = rec
	}
	eng := rollout.New(cfg)
	r, err := eng.Start(ctx, rollout.StartRequest{Version: "v2", Actor: "U1", Source: rollout.SourceCLI})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan runResult, 1)
	go func() { out, err := eng.Run(ctx, r.ID); done <- runResult{out, err} }()
	return hosts, done
}

// leaseOutage starts a rollout of four held hosts, two at once, on a store
// behind a proxy, and cuts the store off until the driver's 1 s lease has
// run out; then the first update ends. It returns the proxy, a handle on
// the store that is not cut off, the hosts, and the run.
func leaseOutage(t *testing.T, f *fleet, logs *logWatch, rec *recorder) (*pgtest.Proxy, *store.DB, []rollout.Host, <-chan runResult) {
	t.Helper()
	direct := pg.NewDatabase(t)
	proxy, dsn := pgtest.NewProxy(t, direct)
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	other, err := store.Open(ctx, direct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	hosts, done := gatedRollout(t, db, f, 4, logs, rec)
	f.waitFor(t, "2 updates in flight", func() bool { return len(f.started) == 2 })
	proxy.Cut()
	logs.waitFor(t, "lease ran out; no host command starts")
	f.mu.Lock()
	first := f.started[0]
	f.mu.Unlock()
	f.release(first)
	f.waitFor(t, "the first update to end", func() bool { return f.last[first].Finished })
	return proxy, other, hosts, done
}

// The database stays away past the driver's lease, as a slow disk or a
// network cut may keep it: no command starts while the lease is out, and
// once the database is back the driver renews its lease (nobody claimed the
// rollout meanwhile) and carries on where it was, each host updated once.
func TestLeaseRunsOutWhileTheStoreIsAway(t *testing.T) {
	f, logs := newFleet(), &logWatch{}
	rec := newRecorder()
	proxy, _, hosts, done := leaseOutage(t, f, logs, rec)
	f.mu.Lock()
	health, started := f.healthRun, len(f.started)
	f.mu.Unlock()
	if health != 0 || started != 2 {
		t.Fatalf("with the lease out, %d health checks ran and %d updates started (want 0 and the 2 from before)", health, started)
	}
	proxy.Restore()
	for _, h := range hosts {
		f.release(h.ID)
	}
	res := <-done
	if res.err != nil || res.r.Phase != rollout.PhaseCompleted {
		t.Fatalf("after the database came back: %v %+v\n%s", res.err, res.r, logs.buf.String())
	}
	logs.waitFor(t, "lease renewed after it ran out; nobody took the rollout over")
	// One for the outage; a loaded machine may let a renewal run late
	// elsewhere too.
	if n := len(rec.kinds(rollout.EventLeaseRanOut)); n < 1 {
		t.Errorf("%d lease-ran-out events, want one at least", n)
	}
	for _, h := range hosts {
		if f.updates[h.ID] != 1 {
			t.Errorf("%s updated %d times", h.ID, f.updates[h.ID])
		}
	}
}

// While the driver's lease is out, another process claims the rollout and
// lets it go again. The first driver must not carry on when the database is
// back, though nobody holds the rollout then: the other may have run
// commands on its hosts under a newer epoch. It stops, starting nothing,
// and the next driver re-checks the hosts and completes the rollout.
func TestLeaseRanOutAndWasTakenMeanwhile(t *testing.T) {
	f, logs := newFleet(), &logWatch{}
	proxy, other, hosts, done := leaseOutage(t, f, logs, nil)
	ctx := context.Background()
	r, err := other.ActiveRollout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The driver's clock said the lease ran out; the store's decides, and
	// its lease may end a little later (a renewal's round trip).
	f.waitFor(t, "the lease to run out on the store's clock", func() bool {
		now, err := other.Now(ctx)
		return err == nil && now.After(r.LeaseUntil)
	})
	if _, err := other.ClaimRollout(ctx, r.ID, "p2", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := other.ReleaseRollout(ctx, r.ID, "p2"); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	for _, h := range hosts {
		f.release(h.ID)
	}
	res := <-done
	if !errors.Is(res.err, rollout.ErrLeaseLost) {
		t.Fatalf("the driver whose lease ran out and was claimed meanwhile ended with %v, want ErrLeaseLost\n%s", res.err, logs.buf.String())
	}
	f.mu.Lock()
	health, started := f.healthRun, len(f.started)
	f.mu.Unlock()
	if health != 0 || started != 2 {
		t.Fatalf("the replaced driver ran %d health checks and started %d updates (want 0 and the 2 from before)", health, started)
	}

	eng := rollout.New(rollout.Config{Store: other, Inventory: other, Updater: f, Owner: "p3",
		Defaults:     rollout.Settings{Stages: []int{100}, Concurrency: 2, Threshold: 30},
		PollInterval: 20 * time.Millisecond, HealthTimeout: time.Second, HealthInterval: 10 * time.Millisecond})
	out, err := eng.Run(ctx, r.ID)
	if err != nil || out.Phase != rollout.PhaseCompleted {
		t.Fatalf("the next driver: %v %+v", err, out)
	}
	for _, h := range hosts {
		if f.updates[h.ID] != 1 {
			t.Errorf("%s updated %d times", h.ID, f.updates[h.ID])
		}
	}
}
