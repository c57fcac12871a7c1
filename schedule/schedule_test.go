package schedule_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/schedule"
	"github.com/rolloutbot/rolloutbot/store"
	"github.com/rolloutbot/rolloutbot/store/pgtest"
)

var pg pgtest.Server

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// clock is a settable clock; the tests call Tick themselves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *clock) After(time.Duration) <-chan time.Time { return nil }

// engine records starts; busy makes them fail as if a rollout were running.
type engine struct {
	mu     sync.Mutex
	starts []rollout.StartRequest
	busy   bool
	audit  []rollout.AuditEntry
}

func (e *engine) Start(_ context.Context, req rollout.StartRequest) (*rollout.Rollout, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.starts = append(e.starts, req)
	if e.busy {
		return nil, &rollout.ActiveError{Rollout: &rollout.Rollout{ID: 41, Version: "v1"}}
	}
	return &rollout.Rollout{ID: int64(len(e.starts)), Version: req.Version, Hosts: 3}, nil
}

func (e *engine) Audit(_ context.Context, a rollout.AuditEntry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.audit = append(e.audit, a)
}

func (e *engine) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.starts)
}

type announcer struct {
	mu    sync.Mutex
	texts []string
}

func (a *announcer) Announce(_ context.Context, text string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.texts = append(a.texts, text)
}

func (a *announcer) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.texts) == 0 {
		return ""
	}
	return a.texts[len(a.texts)-1]
}

type fixture struct {
	db    *store.DB
	clock *clock
	eng   *engine
	ann   *announcer
	s     *schedule.Scheduler
}

func newFixture(t *testing.T, dsn string, start time.Time) *fixture {
	t.Helper()
	db, err := store.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	f := &fixture{db: db, clock: &clock{now: start}, eng: &engine{}, ann: &announcer{}}
	f.s = f.scheduler("p1")
	return f
}

func (f *fixture) scheduler(owner string) *schedule.Scheduler {
	return schedule.New(schedule.Config{Store: f.db, Engine: f.eng, Announcer: f.ann, Clock: f.clock, Owner: owner})
}

func (f *fixture) tick(t *testing.T, at time.Time) time.Duration {
	t.Helper()
	f.clock.set(at)
	wait, err := f.s.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return wait
}

func sqlite(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "s.db") }

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// 03:00 in Berlin is 02:00 UTC in winter time and 01:00 UTC in summer time;
// 2026-03-29 is the day the clocks go forward.
func TestFiresInItsTimeZoneAcrossDST(t *testing.T) {
	f := newFixture(t, sqlite(t), utc("2026-03-27T12:00:00Z"))
	sch, err := f.s.AddSchedule(context.Background(), rollout.Schedule{Spec: "0 3 * * *", TZ: "Europe/Berlin", Version: "v2",
		CreatedBy: "U1", Source: rollout.SourceSlack})
	if err != nil {
		t.Fatal(err)
	}
	if !sch.Next.Equal(utc("2026-03-28T02:00:00Z")) {
		t.Fatalf("next %s", sch.Next.UTC())
	}
	for _, tc := range []struct {
		at     string
		starts int
		wait   time.Duration
	}{
		{"2026-03-28T01:59:00Z", 0, time.Minute},
		{"2026-03-28T02:00:00Z", 1, time.Minute},
		{"2026-03-28T02:00:30Z", 1, time.Minute}, // the same due time is not run again
		{"2026-03-29T00:59:30Z", 1, 30 * time.Second},
		{"2026-03-29T01:00:00Z", 2, time.Minute}, // 03:00 CEST, the DST day
		{"2026-03-30T00:30:00Z", 2, 30 * time.Minute},
		{"2026-03-30T01:00:05Z", 3, time.Minute},
	} {
		wait := f.tick(t, utc(tc.at))
		if n := f.eng.count(); n != tc.starts || wait > tc.wait {
			t.Fatalf("at %s: %d starts (want %d), next look in %s (want at most %s)", tc.at, n, tc.starts, wait, tc.wait)
		}
	}
	if req := f.eng.starts[0]; req.Version != "v2" || req.Source != rollout.SourceSchedule || req.Actor != "schedule #1" || req.Starter != "U1" {
		t.Fatalf("start request %+v", req)
	}
	if !strings.Contains(f.ann.last(), "started rollout #3") {
		t.Fatalf("announcement %q", f.ann.last())
	}
	runs, _ := f.db.ScheduleRuns(context.Background(), sch.ID)
	if len(runs) != 3 || runs[1].Outcome != "started" || !runs[1].Due.Equal(utc("2026-03-29T01:00:00Z")) {
		t.Fatalf("runs %+v", runs)
	}
}

func TestSkippedWhileARolloutRuns(t *testing.T) {
	f := newFixture(t, sqlite(t), utc("2026-06-01T00:00:00Z"))
	sch, err := f.s.AddSchedule(context.Background(), rollout.Schedule{Spec: "30 2 * * *", CreatedBy: "U1", Source: rollout.SourceSlack})
	if err != nil {
		t.Fatal(err)
	}
	f.eng.busy = true
	f.tick(t, utc("2026-06-01T02:30:00Z"))
	if !strings.Contains(f.ann.last(), "rollout #41 of v1 is running, so it was skipped") {
		t.Fatalf("announcement %q", f.ann.last())
	}
	runs, _ := f.db.ScheduleRuns(context.Background(), sch.ID)
	if len(runs) != 1 || runs[0].Outcome != "skipped" || runs[0].RolloutID != 41 {
		t.Fatalf("runs %+v", runs)
	}
}

func TestMissedRunsAreReportedNotRun(t *testing.T) {
	f := newFixture(t, sqlite(t), utc("2026-06-01T00:00:00Z"))
	if _, err := f.s.AddSchedule(context.Background(), rollout.Schedule{Spec: "0 3 * * *", TZ: "UTC", CreatedBy: "U1"}); err != nil {
		t.Fatal(err)
	}
	// The bot was down for four nights; a new process starts.
	f.s = f.scheduler("p2")
	f.tick(t, utc("2026-06-04T12:00:00Z"))
	if n := f.eng.count(); n != 0 {
		t.Fatalf("%d missed runs were run late", n)
	}
	if got := f.ann.last(); !strings.Contains(got, "missed its run (4 times, from Mon 2026-06-01 03:00 UTC)") ||
		!strings.Contains(got, "Next run: Fri 2026-06-05 03:00 UTC") {
		t.Fatalf("announcement %q", got)
	}
	// Reported once: another tick says nothing more, and the next night runs.
	n := len(f.ann.texts)
	f.tick(t, utc("2026-06-04T12:01:00Z"))
	f.tick(t, utc("2026-06-05T03:00:10Z"))
	if f.eng.count() != 1 || len(f.ann.texts) != n+1 {
		t.Fatalf("%d starts, announcements %q", f.eng.count(), f.ann.texts)
	}
}

// Two processes on one PostgreSQL see the same due time: one start.
func TestNotDoubledByTwoProcesses(t *testing.T) {
	dsn := pg.NewDatabase(t)
	f := newFixture(t, dsn, utc("2026-06-01T00:00:00Z"))
	if _, err := f.s.AddSchedule(context.Background(), rollout.Schedule{Spec: "*/5 * * * *", CreatedBy: "U1"}); err != nil {
		t.Fatal(err)
	}
	other, err := store.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	a := f.s
	b := schedule.New(schedule.Config{Store: other, Engine: f.eng, Announcer: f.ann, Clock: f.clock, Owner: "p2"})
	for round, at := range []string{"2026-06-01T00:05:00Z", "2026-06-01T00:10:01Z", "2026-06-01T00:15:02Z"} {
		f.clock.set(utc(at))
		var wg sync.WaitGroup
		for _, s := range []*schedule.Scheduler{a, b} {
			wg.Go(func() {
				if _, err := s.Tick(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := f.eng.count(); n != round+1 {
			t.Fatalf("after due time %d: %d starts", round+1, n)
		}
	}
}

// Schedules live in the store: a restarted scheduler runs them, and
// configured ones are added, changed and removed by name.
func TestSurvivesRestartAndSyncsConfig(t *testing.T) {
	dsn := sqlite(t)
	f := newFixture(t, dsn, utc("2026-06-01T00:00:00Z"))
	ctx := context.Background()
	if err := f.s.Sync(ctx, []rollout.Schedule{{Name: "nightly", Spec: "0 1 * * *", TZ: "UTC"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.AddSchedule(ctx, rollout.Schedule{Spec: "0 2 * * *", CreatedBy: "U1"}); err != nil {
		t.Fatal(err)
	}
	g := newFixture(t, dsn, utc("2026-06-01T01:00:00Z")) // a new process on the same store
	g.tick(t, utc("2026-06-01T01:00:00Z"))
	if g.eng.count() != 1 || g.eng.starts[0].Actor != "schedule nightly" {
		t.Fatalf("restarted scheduler: %+v", g.eng.starts)
	}
	if err := g.s.Sync(ctx, []rollout.Schedule{{Name: "weekly", Spec: "0 1 * * 0"}}); err != nil {
		t.Fatal(err)
	}
	list, _ := g.s.Schedules(ctx)
	var names []string
	for _, s := range list {
		names = append(names, s.Name+"|"+s.Spec)
	}
	if strings.Join(names, ",") != "|0 2 * * *,weekly|0 1 * * 0" {
		t.Fatalf("after sync: %v", names)
	}
	if err := g.s.RemoveSchedule(ctx, list[0].ID, "U1"); err != nil {
		t.Fatal(err)
	}
	if err := g.s.RemoveSchedule(ctx, list[0].ID, "U1"); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
}

func TestInvalidSchedulesAreRefused(t *testing.T) {
	f := newFixture(t, sqlite(t), utc("2026-06-01T00:00:00Z"))
	for _, tc := range []struct{ spec, tz, version, want string }{
		{"0 3 * *", "UTC", "", "expected exactly 5 fields"},
		{"61 3 * * *", "UTC", "", "end of range (61) above maximum (59)"},
		{"0 3 * * *", "Mars/Olympus", "", `unknown time zone "Mars/Olympus"`},
		{"0 3 * * *", "Local", "", "unknown time zone"},
		{"TZ=UTC 0 3 * * *", "", "", "time zone separately"},
		{"0 3 * * *", "UTC", "v1;id", "invalid version"},
	} {
		_, err := f.s.AddSchedule(context.Background(), rollout.Schedule{Spec: tc.spec, TZ: tc.tz, Version: tc.version, CreatedBy: "U1"})
		var ie interface{ Invalid() bool }
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %q %q: %v, want %q", tc.spec, tc.tz, tc.version, err, tc.want)
		}
	}
	if list, _ := f.s.Schedules(context.Background()); len(list) != 0 {
		t.Fatalf("refused schedules were stored: %+v", list)
	}
	if len(f.eng.audit) != 6 || f.eng.audit[0].Allowed {
		t.Fatalf("refusals not audited: %+v", f.eng.audit)
	}
}
